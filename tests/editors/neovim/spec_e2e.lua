-- End to end: a real Neovim (child, typed keys), the real `codefill serve`, the embedded model.
-- Suggestions of the embedded model are short and not FIM-aware: the cases check that ghost
-- text appears, what it shows and what accepting it does to the buffer, not what it says.
local Child = require("child")
local screenshot = require("screenshot")

local WS = assert(vim.env.CODEFILL_TEST_WORKSPACE, "CODEFILL_TEST_WORKSPACE is not set")
local CMD = vim.json.decode((assert(vim.env.CODEFILL_TEST_SERVER_CMD, "CODEFILL_TEST_SERVER_CMD is not set")))
local GHOST_TIMEOUT = tonumber(vim.env.CODEFILL_TEST_GHOST_TIMEOUT or "") or 120000
-- Where the ghost-text screenshot goes (SVG); none when unset.
local SCREENSHOT = vim.env.CODEFILL_TEST_SCREENSHOT

local function eq(a, b, what)
  if not vim.deep_equal(a, b) then
    error(string.format("%s: expected %s, got %s", what or "value", vim.inspect(b), vim.inspect(a)), 2)
  end
end

-- Lua run in the child: the ghost text as drawn (extmarks of codefill's namespace) and the
-- suggestion record, once no request is in flight.
local SETTLED = [[
  local s = require("codefill").get_suggestion()
  local server = require("codefill.server")
  if not s or server.generating > 0 then return nil end
  local ns = require("codefill.suggest").ns
  local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })
  local cur = vim.api.nvim_win_get_cursor(0)
  return { text = s.text, row = s.row, col = s.col, marks = marks, cursor = { cur[1] - 1, cur[2] },
           lines = vim.api.nvim_buf_get_lines(0, 0, -1, false) }
]]
local NO_GHOST = [[
  local ns = require("codefill.suggest").ns
  return #vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {}) == 0 and require("codefill").get_suggestion() == nil
]]

--- The buffer lines after inserting `text` at (row, col) of `lines` (0-based row, byte col).
-- In the child Neovim, record the params of every `method` notification the plugin's client
-- sends into the global list `var`.
local function record_notifications(c, method, var)
  c:lua(string.format([[
    _G.%s = {}
    local client = vim.lsp.get_clients({ name = "codefill", bufnr = 0 })[1]
    local notify = client.notify
    client.notify = function(self, m, params)
      if m == %q then table.insert(_G.%s, params) end
      return notify(self, m, params)
    end
  ]], var, method, var))
end

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

--- Check that the extmark draws `text` (virt_text for its first line, virt_lines for the rest).
local function check_drawn(g)
  eq(#g.marks, 1, "one ghost extmark")
  local m = g.marks[1]
  local details = m[4]
  eq({ m[2], m[3] }, { g.row, g.col }, "extmark position")
  local parts = vim.split(g.text, "\n", { plain = true })
  local first = details.virt_text and details.virt_text[1][1] or ""
  eq(first, (parts[1]:gsub("\t", "    ")), "virt_text (first line)")
  local rest = {}
  for _, vl in ipairs(details.virt_lines or {}) do
    rest[#rest + 1] = vl[1][1]
  end
  local want = {}
  for i = 2, #parts do
    want[#want + 1] = (parts[i]:gsub("\t", "    "))
  end
  eq(rest, want, "virt_lines (following lines)")
  eq(details.hl_mode, "combine", "hl_mode")
end

return function(t)
  local c = Child.new({ cwd = WS })
  c.diagnose = [[
    local ok, server = pcall(require, "codefill.server")
    if not ok then return "plugin not loaded" end
    local cur = vim.api.nvim_win_get_cursor(0)
    local log = server.log_lines()
    return vim.inspect({ mode = vim.api.nvim_get_mode(), cursor = cur,
      line = vim.api.nvim_get_current_line(), state = server.state, generating = server.generating,
      stats = require("codefill.suggest").stats, log = { unpack(log, math.max(1, #log - 25)) } })
  ]]
  t.after_all(function()
    c:stop()
  end)

  -- Wait for a settled suggestion at the cursor.
  local function ghost(what)
    return c:wait_lua("return (function() " .. SETTLED .. " end)()", GHOST_TIMEOUT, what or "ghost text")
  end
  -- The same where any text will do: the embedded model may legitimately answer nothing at a
  -- position (e.g. "nothing left after post-processing"); if the server answered and nothing
  -- is shown, type one more character of `more` and wait again.
  local function ghost_typing(more, what)
    for ch in (more or ""):gmatch(".") do
      local answers = c:lua("return require('codefill.suggest').stats.answers")
      local ok, g = pcall(c.wait_lua, c, [[
        local s = (function() ]] .. SETTLED .. [[ end)()
        if s then return s end
        local st = require("codefill.suggest").stats
        if st.answers > ]] .. answers .. [[ and require("codefill.server").generating == 0 then
          vim.wait(1000)
          return (function() ]] .. SETTLED .. [[ end)() or "empty"
        end
      ]], GHOST_TIMEOUT, what or "ghost text")
      if ok and type(g) == "table" then
        return g
      end
      c:type(ch)
    end
    return ghost(what)
  end

  t.case("the server starts for the file's root and the model loads (progress, status, statusline)", function()
    c:lua([[
      require("codefill").setup({ server = { cmd = ... }, settings = { completion = { log_level = "debug" },
        -- A generous time budget: on a loaded machine the default 5 s cut suggestions to nothing.
        engine = { time_budget_ms = 60000 } } })
      vim.cmd("edit fib.py")
    ]], CMD)
    c:wait_lua([[return require("codefill.server").state.model == "ready"]], 180000, "model ready")
    local r = c:lua([[
      local clients = vim.lsp.get_clients({ name = "codefill", bufnr = 0 })
      local log = table.concat(require("codefill.server").log_lines(), "\n")
      return { n = #clients, root = clients[1] and clients[1].root_dir, status = require("codefill").statusline(),
               progress = log:find("progress begin", 1, true) ~= nil and log:find("progress end", 1, true) ~= nil,
               notes = _G.test_notes }
    ]])
    eq(r.n, 1, "one codefill client attached")
    eq(vim.fn.resolve(r.root), vim.fn.resolve(WS), "root_dir")
    eq(r.status, "codefill: ready", "statusline")
    eq(r.progress, true, "$/progress begin and end seen")
    for _, n in ipairs(r.notes) do
      assert(n.level < vim.log.levels.WARN, "unexpected warning: " .. n.msg)
    end
  end)

  t.case("typing shows ghost text from the model; <Tab> accepts it into the buffer", function()
    record_notifications(c, "codefill/didAccept", "sent")
    c:input("4GA")
    c:type("fib")
    local g = ghost()
    eq({ g.row, g.col }, { 3, #"    return fib" }, "suggestion anchored at the cursor")
    eq(g.cursor, { g.row, g.col }, "cursor")
    check_drawn(g)
    if SCREENSHOT and SCREENSHOT ~= "" then
      -- What a user sees (a UI attached to the child for a moment): the ghost text after the
      -- cursor, the statusline component.
      c:lua([[
        vim.o.laststatus = 2
        vim.o.statusline = " %f %= %{v:lua.require'codefill'.statusline()} "
      ]])
      local screen = screenshot.take(c, SCREENSHOT, 72, 14, "codefill ghost text in Neovim")
      local first = vim.split(g.text, "\n", { plain = true })[1]:gsub("\t", "    ")
      local rows = screenshot.rows(screen)
      local want = ("    return fib" .. first):sub(1, screen.width)
      assert(rows[g.row + 1]:find(want, 1, true), "screenshot row: " .. rows[g.row + 1])
      eq(ghost(), g, "the same suggestion after the screenshot")
    end
    c:input("<Tab>")
    local lines = c:lines()
    eq(lines, inserted(g.lines, g.row, g.col, g.text), "buffer after <Tab>")
    local r = c:lua([[
      local cur = vim.api.nvim_win_get_cursor(0)
      return { cur = { cur[1] - 1, cur[2] }, sent = _G.sent, mode = vim.api.nvim_get_mode().mode,
               uri = vim.uri_from_bufnr(0), stats = require("codefill.suggest").stats }
    ]])
    local parts = vim.split(g.text, "\n", { plain = true })
    local want_row = g.row + #parts - 1
    local want_col = #parts == 1 and g.col + #g.text or #parts[#parts]
    eq(r.cur, { want_row, want_col }, "cursor after the accepted text")
    eq(r.mode, "i", "still in insert mode")
    eq(#r.sent, 1, "one codefill/didAccept")
    eq(r.sent[1].textDocument.uri, r.uri, "didAccept uri")
    eq({ r.sent[1].position.line, r.sent[1].position.character }, { want_row, want_col }, "didAccept position")
    assert(r.stats.partials >= 1, "codefill/partial notifications were received: " .. vim.inspect(r.stats))
    c:input("<Esc>")
    c:wait_lua("return (function() " .. NO_GHOST .. " end)()", 5000, "no ghost text in normal mode")
  end)

  t.case("typing the suggestion's first character keeps the rest shown (typing-through)", function()
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("total = fibonacci(")
    local g = ghost_typing("n - 1")
    local first = g.text:sub(1, 1)
    if #g.text < 2 or first == "\n" then
      -- Nothing to type through on this line; accept it and take the next one.
      c:input("<Tab>")
      g = ghost_typing(" + 1")
      first = g.text:sub(1, 1)
    end
    assert(#g.text >= 2 and first ~= "\n", "need a suggestion of 2+ characters on the line: " .. vim.inspect(g.text))
    c:input(first)
    local now = c:lua([[
      local s = require("codefill").get_suggestion()
      local ns = require("codefill.suggest").ns
      local m = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })[1]
      return { s and s.text, m and m[4].virt_text and m[4].virt_text[1][1] }
    ]])
    eq(now[1], g.text:sub(2), "suggestion right after typing its first character")
    eq(now[2], (vim.split(g.text:sub(2), "\n", { plain = true })[1]:gsub("\t", "    ")), "drawn remainder")
    c:input("<Esc>")
  end)

  t.case("moving the cursor dismisses the ghost text; <Esc> clears it", function()
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("for i in range(")
    ghost_typing("10")
    c:input("<Left>")
    c:wait_lua("return (function() " .. NO_GHOST .. " end)()", 3000, "ghost text gone after <Left>")
    vim.wait(1500)
    eq(c:lua("return (function() " .. NO_GHOST .. " end)()"), true, "no new ghost text without typing")
    c:input("<End>")
    c:type("1")
    ghost()
    c:input("<Esc>")
    c:wait_lua("return (function() " .. NO_GHOST .. " end)()", 3000, "ghost text gone after <Esc>")
  end)

  t.case("the dismiss key hides the suggestion until the next change", function()
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("x = [")
    ghost_typing("1, 2")
    c:input("<C-]>")
    eq(c:lua("return (function() " .. NO_GHOST .. " end)()"), true, "ghost text gone after <C-]>")
    vim.wait(1500)
    eq(c:lua("return (function() " .. NO_GHOST .. " end)()"), true, "still gone")
    c:type("1")
    ghost("ghost text after typing again")
    c:input("<Esc>")
  end)

  t.case("the popup menu hides the ghost text (pum = \"hide\") or keeps it beside the menu (\"show\")", function()
    c:lua([[vim.o.completeopt = "menuone"]]) -- a menu even for the single match "fibonacci"
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("print(fibo")
    ghost_typing("nacc")
    c:input("<C-n>")
    eq(c:lua("return vim.fn.pumvisible()"), 1, "popup menu open")
    eq(c:lua("return (function() " .. NO_GHOST .. " end)()"), true, "no ghost text while the menu is open")
    vim.wait(1500)
    eq(c:lua("return (function() " .. NO_GHOST .. " end)()"), true, "still none while the menu is open")
    c:input("<C-e>")
    eq(c:lua("return vim.fn.pumvisible()"), 0, "popup menu closed")
    ghost_typing("nacc", "ghost text after the menu closed")
    c:input("<Esc>")
    c:lua([[require("codefill.server").config.ghost.pum = "show"]])
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("print(fibo")
    ghost_typing("nacc")
    c:input("<C-n>")
    local g = c:wait_lua([[
      if vim.fn.pumvisible() ~= 1 then return nil end
      return (function() ]] .. SETTLED .. [[ end)()
    ]], GHOST_TIMEOUT, "ghost text beside the open menu")
    eq(g.cursor, { g.row, g.col }, "the ghost text is at the cursor after the menu inserted its item")
    c:input("<C-e><Esc>")
    c:lua([[require("codefill.server").config.ghost.pum = "hide"]])
  end)

  t.case("accept next word and next line insert exactly that part and keep the rest", function()
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("result = fibonacci(")
    local g = ghost_typing("n - ")
    local piece = c:lua("return require('codefill.suggest')._next_word(...)", g.text)
    c:input("<M-Right>")
    eq(c:lines(), inserted(g.lines, g.row, g.col, piece), "buffer after accept word")
    local rest = c:lua("local s = require('codefill').get_suggestion(); return s and s.text or ''")
    if #piece < #g.text then
      -- The remainder stays shown, unless a new answer already replaced it.
      assert(rest ~= "", "the rest of the suggestion is still shown")
    end
    c:input("<Esc>")
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("def square(x):")
    c:input("<CR>")
    g = ghost()
    piece = c:lua("return require('codefill.suggest')._next_line(...)", g.text)
    c:input("<M-C-Right>")
    eq(c:lines(), inserted(g.lines, g.row, g.col, piece), "buffer after accept line")
    c:input("<Esc>")
  end)

  t.case(":Codefill status and :checkhealth codefill report the ready server", function()
    local text = c:wait_lua([[
      local out
      require("codefill").status(function(_, text) out = text end)
      vim.wait(5000, function() return out ~= nil end, 20)
      return out
    ]], 10000, "status text")
    assert(text:find("ready", 1, true) and text:find("gemma3", 1, true) and text:find("requests %d+"), text)
    local health = c:lua([[
      vim.cmd("checkhealth codefill")
      local lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
      vim.cmd("bwipeout")
      return table.concat(lines, "\n")
    ]])
    assert(health:find("OK Neovim 0.", 1, true), health)
    assert(health:find("OK server command:", 1, true), health)
    assert(health:find("model ready", 1, true), health)
    assert(not health:find("ERROR", 1, true), health)
    c:lua([[vim.cmd("Codefill log")]])
    local log = c:lines()
    assert(#log > 3 and table.concat(log, "\n"):find("accepted all", 1, true), table.concat(log, "\n"))
    c:lua([[vim.cmd("close")]])
  end)

  t.case("toggle off: the server is told and no ghost text appears; toggle on brings it back", function()
    c:lua([[require("codefill").toggle(false)]])
    local st = c:wait_lua([[
      local out
      require("codefill.server").refresh_status(nil, function(r) out = r end)
      vim.wait(5000, function() return out ~= nil end, 20)
      return out and out.settings.enabled == false and out
    ]], 10000, "server reports completion.enabled = false")
    eq(c:lua("return require('codefill').statusline()"), "codefill: off", "statusline")
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("y = ")
    vim.wait(3000)
    eq(c:lua("return (function() " .. NO_GHOST .. " end)()"), true, "no ghost text while off")
    c:lua([[require("codefill").toggle(true)]])
    c:type("1")
    ghost("ghost text after toggling on")
    c:input("<Esc>")
    assert(st)
  end)

  t.case("streaming = false: ghost text from textDocument/inlineCompletion", function()
    c:lua([[require("codefill.server").config.streaming = false]])
    local before = c:lua("return require('codefill.suggest').stats.inline_requests")
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("z = fibonacci(")
    local g = ghost_typing("n - ")
    check_drawn(g)
    local after = c:lua("return require('codefill.suggest').stats.inline_requests")
    assert(after > before, "textDocument/inlineCompletion requests were sent")
    c:input("<Tab>")
    eq(c:lines(), inserted(g.lines, g.row, g.col, g.text), "buffer after <Tab>")
    c:input("<Esc>")
    c:lua([[require("codefill.server").config.streaming = true]])
  end)

  t.case("codefill/didFocus: entering a buffer and the cursor resting on another line are told; same-line moves are not", function()
    c:input("<Esc>")
    -- A second file, attached and settled before counting (its didOpen is a focus of its own).
    c:lua([[
      vim.fn.writefile({ "import fib", "", "", "print(fib.fibonacci(10))" }, "other.py")
      vim.cmd("edit other.py")
    ]])
    c:wait_lua([[return #vim.lsp.get_clients({ name = "codefill", bufnr = 0 }) == 1]], 10000, "other.py attached")
    c:lua([[vim.cmd("buffer fib.py")]])
    record_notifications(c, "codefill/didFocus", "focus_sent")
    local rest = c:lua("return require('codefill.focus').rest_ms")
    local function settle()
      vim.wait(rest + 500)
    end
    -- The server's count of codefill/didFocus notifications.
    local function server_focus()
      return c:wait_lua([[
        local out
        require("codefill.server").refresh_status(nil, function(r) out = r end)
        vim.wait(5000, function() return out ~= nil end, 20)
        return out and type(out.prefill) == "table" and out.prefill.focus
      ]], 10000, "codefill/status with prefill.focus")
    end
    local function sent()
      return c:lua("return _G.focus_sent")
    end
    c:input("gg")
    settle()
    local base = #sent()
    local server_base = server_focus()
    local function expect(n, what)
      eq(#sent() - base, n, what .. ": codefill/didFocus sent")
      eq(server_focus() - server_base, n, what .. ": prefill.focus of the server")
    end
    local fib_uri = c:lua("return vim.uri_from_bufnr(0)")

    c:input("3G")
    settle()
    expect(1, "the cursor rests on another line")
    local last = sent()[#sent()]
    eq({ last.textDocument.uri, last.position.line, last.position.character },
      { fib_uri, 2, c:lua("return vim.api.nvim_win_get_cursor(0)[2]") }, "didFocus params")
    c:input("$")
    settle()
    expect(1, "a move on the same line")
    c:input("5G3G")
    settle()
    expect(1, "away and back within the debounce")
    c:input("i<Down>")
    settle()
    expect(2, "insert mode: the cursor rests on another line")
    eq(sent()[#sent()].position.line, 3, "didFocus line in insert mode")
    c:input("<Esc>")
    settle()
    expect(2, "<Esc> (same line)")

    c:lua([[vim.cmd("buffer other.py")]])
    settle()
    expect(3, "another buffer becomes current")
    last = sent()[#sent()]
    eq(last.textDocument.uri, c:lua("return vim.uri_from_bufnr(0)"), "didFocus uri of other.py")
    c:lua([[vim.cmd("buffer fib.py")]])
    settle()
    expect(4, "back to fib.py")
    eq({ sent()[#sent()].textDocument.uri, sent()[#sent()].position.line }, { fib_uri, 3 }, "didFocus back in fib.py")
    c:lua([[vim.cmd("split")]])
    settle()
    c:lua([[vim.cmd("close")]])
    settle()
    expect(4, "a split of the same buffer on the same line")

    c:lua([[require("codefill").toggle(false)]])
    c:input("gg")
    settle()
    expect(4, "suggestions off")
    c:lua([[require("codefill").toggle(true)]])
    c:input("2G")
    settle()
    expect(5, "suggestions on again, another line")

    local text = c:wait_lua([[
      local out
      require("codefill").status(function(_, text) out = text end)
      vim.wait(5000, function() return out ~= nil end, 20)
      return out
    ]], 10000, "status text")
    assert(text:find("prefill: focus %d+, done %d+"), text)
    c:input("G")
  end)

  t.case(":Codefill restart starts a new server that serves suggestions", function()
    local old = c:lua("return vim.lsp.get_clients({ name = 'codefill' })[1].id")
    c:lua([[vim.cmd("Codefill restart")]])
    -- The restart is asynchronous: wait for the new client, not only for a "ready" state that
    -- may still be the old server's.
    c:wait_lua(([[local cl = vim.lsp.get_clients({ name = 'codefill' })[1]
      return cl ~= nil and cl.id ~= %d and require("codefill.server").state.model == "ready"]]):format(old),
      180000, "a new client with its model ready after restart")
    local new = c:lua("return vim.lsp.get_clients({ name = 'codefill' })[1].id")
    assert(new ~= old, "a new client")
    c:input("Go<C-u>") -- a new top-level line (no autoindent from the line above)
    c:type("w = fibonacci(")
    ghost_typing("n - ", "ghost text after restart")
    c:input("<Esc>")
    local notes = c:notes()
    for _, n in ipairs(notes) do
      assert(n.level < vim.log.levels.WARN, "unexpected warning: " .. n.msg)
    end
  end)
end
