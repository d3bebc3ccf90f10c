-- Several ranked candidates (the server's completion.candidates): cycling with next/prev, the
-- "n/m" count, accepting the one shown, typing-through per candidate. A real child Neovim typed
-- into, with an in-process stand-in for the server (fake_lsp.lua) that answers what each case
-- sets, so the answers (and their timing) are known; spec_candidates_e2e.lua runs the real one.
local Child = require("child")

local here = vim.fs.dirname(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p"))

local function eq(a, b, what)
  if not vim.deep_equal(a, b) then
    error(string.format("%s: expected %s, got %s", what or "value", vim.inspect(b), vim.inspect(a)), 2)
  end
end

-- Lua run in the child: what is shown at the cursor. ghost = the first line of the ghost text
-- (inline virt_text), below = its other lines (virt_lines), count = the "(n/m)" mark or nil.
local STATE = [[
  local s = require("codefill").get_suggestion()
  local sg = require("codefill.suggest")
  local marks = vim.api.nvim_buf_get_extmarks(0, sg.ns, 0, -1, { details = true })
  local counts = vim.api.nvim_buf_get_extmarks(0, sg.count_ns, 0, -1, { details = true })
  local m, cm = marks[1], counts[1]
  local below = {}
  for _, vl in ipairs(m and m[4].virt_lines or {}) do below[#below + 1] = vl[1][1] end
  return {
    text = s and s.text, index = s and s.index, n = s and s.count, candidates = s and s.candidates,
    marks = #marks, ghost = m and m[4].virt_text and m[4].virt_text[1][1], below = below,
    count = cm and cm[4].virt_text[1][1], count_pos = cm and cm[4].virt_text_pos,
    count_row = cm and cm[2], row = s and s.row,
    generating = require("codefill.server").generating,
    line = vim.api.nvim_get_current_line(), mode = vim.api.nvim_get_mode().mode,
  }
]]

return function(t)
  local child
  -- Stop the child's servers on purpose first (else codefill restarts them as crashed).
  local function stop()
    if child then
      pcall(child.lua, child, [[require("codefill.server").stop_all()]])
      child:stop()
      child = nil
    end
  end
  t.after_all(stop)

  --- A fresh child Neovim with codefill set up (`opts`) against the stand-in server, editing
  --- fib.py, its client initialized.
  local function start(opts)
    stop()
    local c = Child.new({ cwd = vim.env.CODEFILL_TEST_WORKSPACE })
    child = c
    c.diagnose = [[return vim.inspect({ state = (function() ]] .. STATE .. [[ end)(),
      log = require("codefill.server").log_lines(), requests = #(_G.fake and _G.fake.requests or {}) })]]
    c:lua("dofile(...)()", here .. "/fake_lsp.lua")
    c:lua([[require("codefill").setup(...); vim.cmd("edit fib.py")]], opts or {})
    c:wait_lua([[local cl = require("codefill.server").client(0); return cl ~= nil and cl.initialized]],
      10000, "the stand-in server initialized")
    return c
  end

  local function state(c)
    return c:lua("return (function() " .. STATE .. " end)()")
  end

  --- Wait until the shown suggestion is `text` with nothing in flight; returns the state.
  local function settled(c, text, what)
    return c:wait_lua(string.format([[
      local st = (function() %s end)()
      return st.text == %q and st.generating == 0 and st
    ]], STATE, text), 10000, what or ("suggestion " .. vim.inspect(text)))
  end

  --- Plan the stand-in's answer at a line prefix.
  local function plan(c, prefix, p)
    c:lua("_G.fake.by_prefix[...] = select(2, ...)", prefix, p)
  end

  t.case("candidate lists: ranking kept, repeats and empty texts dropped; typing-through and wrap-around arithmetic", function()
    local c = start()
    local r = c:lua([[
      local s = require("codefill.suggest")
      local L, A, S = s._candidate_list, s._advance, s._step_index
      local function adv(...) local a, b = A(...); return { a or false, b } end
      return {
        L("a", { "a", "b", "", "b", 3, "c" }), L("a", nil), L("a", vim.NIL), L("", { "x" }), L(nil, { "x" }),
        L("a", { "b", "a" }),
        adv({ "foo(1)", "bar", "foo(3)" }, 3, "f"), adv({ "foo(1)", "bar", "foo(3)" }, 2, "fo"),
        adv({ "ab", "b" }, 1, "ab"), adv({ "x\n  y", "x\n  z" }, 2, "x\n"),
        { S(1, 1, 3), S(3, 1, 3), S(1, -1, 3), S(2, -1, 3), S(1, 5, 3), S(1, 1, 1) },
      }
    ]])
    eq(r[1], { "a", "b", "c" }, "text first, then the others without repeats or empties")
    eq(r[2], { "a" }, "no candidates field: the text alone")
    eq(r[3], { "a" }, "candidates = null: the text alone")
    eq(r[4], {}, "empty text: nothing")
    eq(r[5], {}, "no text: nothing")
    eq(r[6], { "a", "b" }, "the text is first even when the list ranks it lower")
    eq(r[7], { { "oo(1)", "oo(3)" }, 2 }, "typing-through keeps the matching ones and the shown one")
    eq(r[8], { { "o(1)", "o(3)" }, 1 }, "the shown one no longer matches: the best-ranked that does")
    eq(r[9], { false, 1 }, "all typed in full: none left")
    eq(r[10], { { "  y", "  z" }, 2 }, "across a line break")
    eq(r[11], { 2, 1, 3, 1, 3, 1 }, "next/prev wrap around")
  end)

  t.case("next/prev keys cycle the ghost text with an n/m count and wrap around; <Tab> accepts the one shown", function()
    local c = start()
    c:lua([[_G.accepts = {}
      local client = require("codefill.server").client(0)
      local notify = client.notify
      client.notify = function(self, m, p) if m == "codefill/didAccept" then table.insert(_G.accepts, p) end
        return notify(self, m, p) end]])
    plan(c, "x = ", { reply = { text = "alpha()", candidates = { "alpha()", "beta(1)", "gamma\n    delta" } } })
    c:input("Go<C-u>")
    c:type("x = ")
    local s = settled(c, "alpha()")
    eq({ s.index, s.n, s.candidates }, { 1, 3, { "alpha()", "beta(1)", "gamma\n    delta" } }, "three candidates")
    eq({ s.marks, s.ghost, s.count, s.count_pos, s.count_row }, { 1, "alpha()", "(1/3)", "eol", s.row }, "first shown, count at the line's end")
    c:input("<M-]>")
    s = state(c)
    eq({ s.text, s.index, s.ghost, s.below, s.count }, { "beta(1)", 2, "beta(1)", {}, "(2/3)" }, "after next")
    c:input("<M-]>")
    s = state(c)
    eq({ s.text, s.index, s.ghost, s.below, s.count }, { "gamma\n    delta", 3, "gamma", { "    delta" }, "(3/3)" }, "a multi-line candidate")
    c:input("<M-]>")
    s = state(c)
    eq({ s.text, s.index, s.count, s.marks }, { "alpha()", 1, "(1/3)", 1 }, "next wraps around to the first")
    c:input("<M-[>")
    s = state(c)
    eq({ s.text, s.index, s.count }, { "gamma\n    delta", 3, "(3/3)" }, "prev wraps around to the last")
    c:input("<M-[>")
    s = state(c)
    eq({ s.text, s.index, s.count, s.mode, s.line }, { "beta(1)", 2, "(2/3)", "i", "x = " }, "prev; still typing, buffer unchanged")
    c:input("<Tab>")
    s = state(c)
    eq(s.line, "x = beta(1)", "<Tab> inserted the candidate shown")
    eq(c:lua("return vim.api.nvim_win_get_cursor(0)[2]"), #"x = beta(1)", "cursor after it")
    local accepts = c:lua("return _G.accepts")
    eq(#accepts, 1, "one codefill/didAccept")
    eq(accepts[1].position.character, #"x = beta(1)", "didAccept position")
    c:input("<Esc>")
    eq(state(c).count, nil, "no count left after <Esc>")
  end)

  t.case("one candidate: no count is shown; next/prev ask again and leave it", function()
    local c = start()
    plan(c, "y = ", { reply = { text = "only()" } })
    c:input("Go<C-u>")
    c:type("y = ")
    local s = settled(c, "only()")
    eq({ s.n, s.count }, { 1, nil }, "one candidate, no count")
    -- With one candidate, next asks the server again at the same place (it answers once its
    -- alternatives are ranked); here it has no more, and the one stays.
    eq(c:lua("return require('codefill').next()"), true, "next() asks the server for more")
    settled(c, "only()")
    c:input("<M-]><M-[>")
    settled(c, "only()")
    s = state(c)
    eq({ s.text, s.ghost, s.line }, { "only()", "only()", "y = " }, "still shown, buffer unchanged")
    c:input("<Tab><Esc>")
    eq(c:lua("return vim.api.nvim_get_current_line()"), "y = only()", "accepted")
  end)

  t.case("typing-through keeps the candidates that go on with the typed text; the shown one stays shown", function()
    local c = start()
    plan(c, "z = ", { reply = { text = "foo(1)", candidates = { "foo(1)", "bar(2)", "foo(3)", "baz" } } })
    -- After "f": the server streams its greedy candidate and answers with its own order.
    plan(c, "z = f", { reply = { text = "oo(1)", candidates = { "oo(1)", "oo(3)", "xy" } },
      partials = { "oo(1" }, delay = 600 })
    c:input("Go<C-u>")
    c:type("z = ")
    settled(c, "foo(1)")
    c:input("<M-]><M-]>")
    eq({ state(c).text, state(c).count }, { "foo(3)", "(3/4)" }, "the third candidate")
    local partials = c:lua("return require('codefill.suggest').stats.partials")
    c:input("f")
    local s = state(c)
    eq({ s.text, s.index, s.n, s.ghost, s.count, s.line },
      { "oo(3)", 2, 2, "oo(3)", "(2/2)", "z = f" }, "right after typing f: the two foo candidates, the shown one kept")
    c:wait_lua(string.format([[return require('codefill.suggest').stats.partials > %d]], partials), 5000, "the streamed partial")
    s = state(c)
    eq({ s.text, s.ghost }, { "oo(3)", "oo(3)" }, "a streamed partial does not replace the candidate shown")
    s = settled(c, "oo(3)", "the answer keeps the candidate shown")
    eq({ s.index, s.candidates, s.count }, { 2, { "oo(1)", "oo(3)", "xy" }, "(2/3)" }, "the answer's candidates")
    c:input("o")
    s = state(c)
    eq({ s.text, s.candidates, s.count }, { "o(3)", { "o(1)", "o(3)" }, "(2/2)" }, "after typing o")
    c:type("o(1")
    s = state(c)
    eq({ s.text, s.candidates, s.count }, { ")", { ")" }, nil }, "typed another candidate's text: it is shown")
    c:input("<M-]>")
    eq(state(c).text, ")", "one left: next leaves it")
    c:input("<Tab><Esc>")
    eq(c:lua("return vim.api.nvim_get_current_line()"), "z = foo(1)", "accepted the rest")
  end)

  t.case("accept next word keeps the candidates that start with it; <Tab> then accepts the shown one's rest", function()
    local c = start()
    plan(c, "w = ", { reply = { text = "foo.bar(1)", candidates = { "foo.bar(1)", "foo.baz(2)", "qux" } } })
    c:input("Go<C-u>")
    c:type("w = ")
    settled(c, "foo.bar(1)")
    c:input("<M-]>")
    local n = c:lua("return #_G.fake.requests")
    c:input("<M-Right>")
    local s = state(c)
    eq({ s.line, s.text, s.candidates, s.count }, { "w = foo", ".baz(2)", { ".bar(1)", ".baz(2)" }, "(2/2)" }, "after accepting a word")
    c:wait_lua(string.format([[return #_G.fake.requests > %d and require("codefill.server").generating == 0
      and require("codefill.suggest").stats.answers]], n), 5000, "the answer at the new place")
    eq(state(c).text, ".baz(2)", "still the one shown after the answer")
    c:input("<M-[>")
    eq(state(c).text, ".bar(1)", "prev")
    c:input("<Tab><Esc>")
    eq(c:lua("return vim.api.nvim_get_current_line()"), "w = foo.bar(1)", "accepted")
  end)

  t.case("next pressed while the answer streams shows the second candidate once it arrives; with nothing shown it asks", function()
    local c = start()
    plan(c, "v = ", { reply = { text = "alpha()", candidates = { "alpha()", "beta()", "gamma()" } },
      partials = { "al", "alpha" }, delay = 1500 })
    c:input("Go<C-u>")
    c:type("v = ")
    c:wait_lua([[local s = require("codefill").get_suggestion()
      return s and s.text == "alpha" and require("codefill.server").generating > 0]], 5000, "the streamed text")
    eq(state(c).count, nil, "no count while only the streamed text is known")
    c:input("<M-]>")
    local s = settled(c, "beta()", "the second candidate once the answer arrived")
    eq({ s.index, s.count }, { 2, "(2/3)" }, "second of three")
    -- Dismissed: nothing shown; next asks again (at once, as the trigger key does).
    plan(c, "v = ", { reply = { text = "alpha()", candidates = { "alpha()", "beta()" } } })
    c:input("<C-]>")
    eq(state(c).text, nil, "dismissed")
    local n = c:lua("return #_G.fake.requests")
    c:input("<M-]>")
    s = settled(c, "alpha()", "a suggestion after next with none shown")
    eq({ s.index, s.count }, { 1, "(1/2)" }, "the best one first")
    assert(c:lua("return #_G.fake.requests") > n, "next asked the server")
    c:input("<Esc>")
  end)

  t.case("streaming = false: the items of textDocument/inlineCompletion are the candidates", function()
    local c = start({ streaming = false })
    plan(c, "u = ", { reply = { items = { { insertText = "one" }, { insertText = { kind = "snippet", value = "two" } },
      { insertText = "one" }, { insertText = "" } } } })
    c:input("Go<C-u>")
    c:type("u = ")
    local s = settled(c, "one")
    eq({ s.candidates, s.count }, { { "one", "two" }, "(1/2)" }, "two distinct candidates")
    c:input("<M-]>")
    eq(state(c).text, "two", "next")
    c:input("<Tab><Esc>")
    eq(c:lua("return vim.api.nvim_get_current_line()"), "u = two", "accepted")
    eq(c:lua("return _G.fake.requests[1].method"), "textDocument/inlineCompletion", "asked with inlineCompletion")
  end)

  t.case(":Codefill next / prev, configurable keys, and Neovim 0.12's select() for the built-in renderer", function()
    local c = start({ keymaps = { next = "<M-n>", prev = false } })
    local r = c:lua([[
      local function desc(lhs) return vim.fn.maparg(lhs, "i", false, true).desc end
      return { next = desc("<M-n>"), old_next = vim.fn.maparg("<M-]>", "i"), old_prev = vim.fn.maparg("<M-[>", "i"),
               completion = vim.fn.getcompletion("Codefill ", "cmdline") }
    ]])
    eq({ r.next, r.old_next, r.old_prev }, { "codefill: show the next candidate", "", "" }, "custom next key, prev off")
    assert(vim.tbl_contains(r.completion, "next") and vim.tbl_contains(r.completion, "prev"), vim.inspect(r.completion))
    plan(c, "q = ", { reply = { text = "a1", candidates = { "a1", "b2", "c3" } } })
    c:input("Go<C-u>")
    c:type("q = ")
    settled(c, "a1")
    c:input("<Cmd>Codefill next<CR>")
    eq({ state(c).text, state(c).count }, { "b2", "(2/3)" }, ":Codefill next")
    c:input("<M-n>")
    eq(state(c).text, "c3", "the custom next key")
    c:input("<Cmd>Codefill prev<CR><Cmd>Codefill prev<CR><Cmd>Codefill prev<CR>")
    eq({ state(c).text, state(c).count }, { "c3", "(3/3)" }, ":Codefill prev three times: round")
    c:input("<Esc>")
    -- The defaults map <M-]> and <M-[>.
    c = start()
    r = c:lua([[
      local function desc(lhs) return vim.fn.maparg(lhs, "i", false, true).desc end
      local calls = {}
      vim.lsp.inline_completion = {
        enable = function() end, is_enabled = function() return true end, get = function() return true end,
        select = function(opts) calls[#calls + 1] = opts end,
      }
      local codefill = require("codefill")
      local native = codefill.uses_native()
      codefill.next()
      codefill.prev()
      return { next = desc("<M-]>"), prev = desc("<M-[>"), native = native, calls = calls,
               buf = vim.api.nvim_get_current_buf() }
    ]])
    eq({ r.next, r.prev }, { "codefill: show the next candidate", "codefill: show the previous candidate" }, "default keys")
    eq(r.native, true, "the stubbed built-in renderer is used")
    eq(r.calls, { { bufnr = r.buf, count = 1, wrap = true }, { bufnr = r.buf, count = -1, wrap = true } },
      "next/prev call vim.lsp.inline_completion.select")
  end)
end
