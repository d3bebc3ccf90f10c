-- Several ranked candidates end to end: a real Neovim (child, typed keys), the real
-- `codefill serve` with completion.candidates = 4 and the embedded model. The cases check that
-- the server's answer brings distinct candidates, that next/prev show them (wrapping around)
-- and that accepting inserts the one shown, not what the candidates say.
local Child = require("child")

local WS = assert(vim.env.CODEFILL_TEST_WORKSPACE, "CODEFILL_TEST_WORKSPACE is not set")
local CMD = vim.json.decode((assert(vim.env.CODEFILL_TEST_SERVER_CMD, "CODEFILL_TEST_SERVER_CMD is not set")))
local GHOST_TIMEOUT = tonumber(vim.env.CODEFILL_TEST_GHOST_TIMEOUT or "") or 120000

local function eq(a, b, what)
  if not vim.deep_equal(a, b) then
    error(string.format("%s: expected %s, got %s", what or "value", vim.inspect(b), vim.inspect(a)), 2)
  end
end

-- Lua run in the child: the suggestion shown once no request is in flight, as drawn (ghost =
-- the inline first line, below = the virt_lines, count = the "(n/m)" mark), and the last
-- codefill/complete reply the client received.
local SETTLED = [[
  local s = require("codefill").get_suggestion()
  if not s or require("codefill.server").generating > 0 then return nil end
  local sg = require("codefill.suggest")
  local m = vim.api.nvim_buf_get_extmarks(0, sg.ns, 0, -1, { details = true })[1]
  local cm = vim.api.nvim_buf_get_extmarks(0, sg.count_ns, 0, -1, { details = true })[1]
  local below = {}
  for _, vl in ipairs(m and m[4].virt_lines or {}) do below[#below + 1] = vl[1][1] end
  local cur = vim.api.nvim_win_get_cursor(0)
  return { text = s.text, row = s.row, col = s.col, index = s.index, n = s.count, candidates = s.candidates,
           ghost = m and m[4].virt_text and m[4].virt_text[1][1] or "", below = below,
           count = cm and cm[4].virt_text[1][1], cursor = { cur[1] - 1, cur[2] },
           lines = vim.api.nvim_buf_get_lines(0, 0, -1, false), reply = _G.last_reply }
]]

--- The buffer lines after inserting `text` at (row, col) of `lines` (0-based row, byte col).
local function inserted(lines, row, col, text)
  local line = lines[row + 1]
  local new = vim.split(line:sub(1, col) .. text .. line:sub(col + 1), "\n", { plain = true })
  local out = {}
  for i = 1, row do
    out[#out + 1] = lines[i]
  end
  vim.list_extend(out, new)
  for i = row + 2, #lines do
    out[#out + 1] = lines[i]
  end
  return out
end

--- Check that the ghost text draws `text` (tabs expanded as the plugin does, tabstop 4 here).
local function check_drawn(g, text, what)
  local parts = vim.split(text, "\n", { plain = true })
  eq(g.ghost, (parts[1]:gsub("\t", "    ")), what .. ": first line of the ghost text")
  local want = {}
  for i = 2, #parts do
    want[#want + 1] = (parts[i]:gsub("\t", "    "))
  end
  eq(g.below, want, what .. ": following lines of the ghost text")
end

return function(t)
  local c = Child.new({ cwd = WS })
  c.diagnose = [[
    local ok, server = pcall(require, "codefill.server")
    if not ok then return "plugin not loaded" end
    local log = server.log_lines()
    return vim.inspect({ mode = vim.api.nvim_get_mode(), line = vim.api.nvim_get_current_line(),
      state = server.state, generating = server.generating, suggestion = require("codefill").get_suggestion(),
      reply = _G.last_reply, stats = require("codefill.suggest").stats, log = { unpack(log, math.max(1, #log - 25)) } })
  ]]
  t.after_all(function()
    pcall(c.lua, c, [[require("codefill.server").stop_all()]])
    c:stop()
  end)

  --- Type `start` on a new top-level line, then wait for the answer and a settled suggestion
  --- with at least two candidates; the embedded model may have only one (or none) at a place:
  --- then type the next character of `more` and wait again.
  local function multi(start, more)
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type(start:sub(1, -2))
    local last
    for ch in (start:sub(-1) .. more):gmatch(".") do
      -- Only answers that are still about what is typed count (the plugin drops the others).
      local answers = c:lua("return require('codefill.suggest').stats.answers")
      c:type(ch)
      local ok, g = pcall(c.wait_lua, c, [[
        local st = require("codefill.suggest").stats
        if st.answers <= ]] .. answers .. [[ or require("codefill.server").generating > 0 then return nil end
        return (function() ]] .. SETTLED .. [[ end)() or "empty"
      ]], GHOST_TIMEOUT, "an answer")
      if ok and type(g) == "table" then
        last = g
        if g.n < 2 then
          -- The first answer is the greedy suggestion alone; the next key asks the server again
          -- at the same place, which answers once the alternatives are ranked. Back to the first.
          c:input("<M-]>")
          local ok2, g2 = pcall(c.wait_lua, c, [[
            if require("codefill.server").generating > 0 then return nil end
            local g = (function() ]] .. SETTLED .. [[ end)()
            if g and g.n >= 2 then return g end
            return nil
          ]], 30000, "the ranked candidates")
          if ok2 and type(g2) == "table" then
            c:input("<M-[>")
            g = c:wait_lua("return (function() " .. SETTLED .. " end)()", 5000, "the first again")
            last = g
          end
        end
        if g.n >= 2 then
          return g
        end
      end
    end
    error("no suggestion with two or more candidates after typing " .. vim.inspect(start .. more)
      .. "; the last one: " .. vim.inspect(last))
  end

  t.case("completion.candidates = 4: the server's answer brings several distinct candidates, the first shown with its count", function()
    c:lua([[
      require("codefill").setup({ server = { cmd = ... }, settings = {
        completion = { candidates = 4, mode = "single", log_level = "debug" },
        prompt = { max_tokens = 12 },
        -- A generous time budget: on a loaded machine the default 5 s cut suggestions to nothing.
        engine = { time_budget_ms = 60000 } } })
      vim.cmd("edit fib.py")
    ]], CMD)
    c:wait_lua([[return require("codefill.server").state.model == "ready"]], 180000, "model ready")
    -- Keep the last codefill/complete reply as the client received it.
    c:lua([[
      local client = vim.lsp.get_clients({ name = "codefill", bufnr = 0 })[1]
      local request = client.request
      client.request = function(self, method, params, handler, ...)
        if method == "codefill/complete" then
          local inner = handler
          handler = function(err, result, ...)
            if result then _G.last_reply = result end
            return inner(err, result, ...)
          end
        end
        return request(self, method, params, handler, ...)
      end
    ]])
    local g = multi("total = fibonacci(", "n - 1")
    local reply = g.reply
    assert(type(reply) == "table" and type(reply.candidates) == "table", "the reply has candidates: " .. vim.inspect(reply))
    eq(reply.candidates[1], reply.text, "candidates[1] is the reply's text")
    local distinct = {}
    for _, cand in ipairs(reply.candidates) do
      assert(type(cand) == "string", "a candidate is a string: " .. vim.inspect(cand))
      distinct[cand] = true
    end
    assert(#vim.tbl_keys(distinct) >= 2 and #reply.candidates <= 4,
      "two to four distinct candidates: " .. vim.inspect(reply.candidates))
    eq({ g.index, g.text }, { 1, reply.text }, "the best candidate is shown first")
    eq(g.candidates[1], reply.text, "the plugin keeps the server's order")
    eq(g.count, string.format("(1/%d)", g.n), "the count")
    check_drawn(g, g.text, "first candidate")
    c:input("<Esc>")
  end)

  t.case("the next key shows the second candidate; <Tab> inserts it", function()
    local g = multi("result = fibonacci(", "n - 2")
    c:input("<M-]>")
    local g2 = c:wait_lua("return (function() " .. SETTLED .. " end)()", 5000, "the suggestion after next")
    eq({ g2.index, g2.n, g2.text, g2.count }, { 2, g.n, g.candidates[2], string.format("(2/%d)", g.n) },
      "the second candidate is shown")
    eq({ g2.row, g2.col, g2.lines }, { g.row, g.col, g.lines }, "at the same place, the buffer unchanged")
    check_drawn(g2, g.candidates[2], "second candidate")
    c:input("<Tab>")
    eq(c:lines(), inserted(g.lines, g.row, g.col, g.candidates[2]), "buffer after <Tab>")
    c:input("<Esc>")
  end)

  t.case("the previous key wraps around to the last candidate; <Tab> inserts it", function()
    local g = multi("value = fibonacci(", "n + 1")
    c:input("<M-[>")
    local g2 = c:wait_lua("return (function() " .. SETTLED .. " end)()", 5000, "the suggestion after prev")
    eq({ g2.index, g2.text, g2.count }, { g.n, g.candidates[g.n], string.format("(%d/%d)", g.n, g.n) },
      "the last candidate is shown")
    check_drawn(g2, g.candidates[g.n], "last candidate")
    c:input("<M-]>")
    local g3 = c:wait_lua("return (function() " .. SETTLED .. " end)()", 5000, "the suggestion after next")
    eq({ g3.index, g3.text }, { 1, g.candidates[1] }, "next from the last wraps around to the first")
    c:input("<M-[>")
    c:input("<Tab>")
    eq(c:lines(), inserted(g.lines, g.row, g.col, g.candidates[g.n]), "buffer after <Tab>")
    c:input("<Esc>")
  end)
end
