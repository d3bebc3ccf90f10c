-- setup() options, keymaps, commands and the accept-splitting logic (no server needed).
local Child = require("child")

local function eq(a, b, what)
  if not vim.deep_equal(a, b) then
    error(string.format("%s: expected %s, got %s", what or "value", vim.inspect(b), vim.inspect(a)), 2)
  end
end

local function has(list, pattern, what)
  for _, s in ipairs(list) do
    if s:find(pattern) then
      return
    end
  end
  error(string.format("%s: no entry matching %q in %s", what or "list", pattern, vim.inspect(list)), 2)
end

return function(t)
  local child
  local function fresh()
    if child then
      child:stop()
    end
    child = Child.new({ cwd = vim.env.CODEFILL_TEST_WORKSPACE })
    return child
  end
  t.after_all(function()
    if child then
      child:stop()
    end
  end)

  t.case("defaults: resolve(nil) and resolve({}) give the defaults without problems", function()
    local c = fresh()
    local r = c:lua([[
      local config = require("codefill.config")
      local a, pa = config.resolve(nil)
      local b, pb = config.resolve({})
      return { vim.deep_equal(a, config.defaults), vim.deep_equal(b, config.defaults), #pa, #pb }
    ]])
    eq(r, { true, true, 0, 0 }, "defaults")
  end)

  t.case("deep merge keeps sibling defaults; lists are replaced; maps are merged", function()
    local c = fresh()
    local r = c:lua([[
      local cfg, problems = require("codefill.config").resolve({
        trigger = { debounce_ms = 10 },
        filetypes = { markdown = false },
        server = { root_markers = { "setup.cfg" } },
        settings = { prompt = { max_tokens = 32 }, completion = { mode = "single" } },
        keymaps = { accept = "<C-l>", dismiss = false },
      })
      return { problems = problems, debounce = cfg.trigger.debounce_ms, auto = cfg.trigger.auto,
               md = cfg.filetypes.markdown, help = cfg.filetypes.help, star = cfg.filetypes["*"],
               markers = cfg.server.root_markers, restarts = cfg.server.max_restarts,
               settings = cfg.settings, accept = cfg.keymaps.accept, dismiss = cfg.keymaps.dismiss,
               word = cfg.keymaps.accept_word }
    ]])
    eq(r.problems, {}, "problems")
    eq(r.debounce, 10, "trigger.debounce_ms")
    eq(r.auto, true, "trigger.auto")
    eq({ r.md, r.help, r.star }, { false, false, true }, "filetypes")
    eq(r.markers, { "setup.cfg" }, "root_markers")
    eq(r.restarts, 3, "max_restarts")
    eq(r.settings, { prompt = { max_tokens = 32 }, completion = { mode = "single" } }, "settings")
    eq({ r.accept, r.dismiss, r.word }, { "<C-l>", false, "<M-Right>" }, "keymaps")
  end)

  t.case("unknown keys and wrong types are reported and replaced by defaults", function()
    local c = fresh()
    local r = c:lua([[
      local config = require("codefill.config")
      local cfg, problems = config.resolve({
        colour = "red",
        trigger = { auto = "yes", debounce_ms = -5, bogus = 1 },
        ghost = { pum = "never", hl_group = 42 },
        keymaps = { accept = true, accept_line = "<C-j>" },
        server = { cmd = { 1, 2 }, max_restarts = "three", env = { A = {} } },
        native = "sometimes",
        settings = "fast",
        filetypes = { lua = "no", python = false },
        log_lines = 50,
      })
      local d = config.defaults
      return { problems = problems,
        same = cfg.trigger.auto == d.trigger.auto and cfg.trigger.debounce_ms == d.trigger.debounce_ms
          and cfg.ghost.pum == d.ghost.pum and cfg.ghost.hl_group == d.ghost.hl_group
          and cfg.keymaps.accept == d.keymaps.accept and cfg.server.cmd == nil
          and cfg.server.max_restarts == d.server.max_restarts and cfg.native == d.native
          and vim.deep_equal(cfg.settings, d.settings) and cfg.filetypes.lua == nil
          and vim.tbl_isempty(cfg.server.env),
        kept = { cfg.keymaps.accept_line, cfg.filetypes.python, cfg.log_lines },
        colour = cfg.colour }
    ]])
    eq(r.same, true, "invalid values replaced by defaults")
    eq(r.kept, { "<C-j>", false, 50 }, "valid values next to invalid ones are kept")
    eq(r.colour, nil, "unknown key dropped")
    for _, p in ipairs({ "unknown option colour", "unknown option trigger.bogus", "trigger.auto: expected boolean",
      "trigger.debounce_ms: expected a number >= 0", "ghost.pum: expected one of", "ghost.hl_group: expected string",
      "keymaps.accept: expected a key", "server.cmd%[1%]: expected string", "server.max_restarts: expected number",
      "server.env%[\"A\"%]", "native: expected one of", "settings: expected table", "filetypes%[\"lua\"%]" }) do
      has(r.problems, p, "problems")
    end
    eq(#r.problems, 13, "number of problems")
  end)

  t.case("setup() with bad options notifies each problem and still works", function()
    local c = fresh()
    local r = c:lua([[
      local ok, err = pcall(require("codefill").setup, { nope = true, trigger = { debounce_ms = "x" } })
      local notes = {}
      for _, n in ipairs(_G.test_notes) do notes[#notes + 1] = n.level .. " " .. n.msg end
      return { ok = ok, err = tostring(err), notes = notes,
               cmd = vim.fn.exists(":Codefill") == 2,
               debounce = require("codefill.server").config.trigger.debounce_ms }
    ]])
    eq(r.ok, true, "setup did not raise: " .. r.err)
    has(r.notes, "^" .. vim.log.levels.WARN .. " codefill: unknown option nope", "notes")
    has(r.notes, "^" .. vim.log.levels.WARN .. " codefill: trigger.debounce_ms: expected number", "notes")
    eq(r.cmd, true, ":Codefill defined")
    eq(r.debounce, 30, "default debounce in use")
    local r2 = c:lua([[
      _G.test_notes = {}
      local ok = pcall(require("codefill").setup, "fast please")
      return { ok, _G.test_notes[1] and _G.test_notes[1].msg }
    ]])
    eq(r2[1], true, "setup('string') did not raise")
    assert(r2[2]:find("setup%(%) expects a table"), r2[2])
  end)

  t.case("native = true without vim.lsp.inline_completion falls back to codefill's renderer", function()
    local c = fresh()
    local r = c:lua([[
      require("codefill").setup({ native = true })
      return { require("codefill").uses_native(), vim.lsp.inline_completion == nil, require("codefill").problems }
    ]])
    if r[2] then -- Neovim 0.11: no built-in inline completion
      eq(r[1], false, "uses_native")
      has(r[3], "native = true needs vim.lsp.inline_completion", "problems")
    else
      eq(r[1], true, "uses_native on a Neovim with vim.lsp.inline_completion")
    end
  end)

  t.case("keymaps are created, can be turned off, and Tab falls back to a real Tab", function()
    local c = fresh()
    local r = c:lua([[
      require("codefill").setup({ keymaps = { accept_word = false, dismiss = "<C-x>d" } })
      local function desc(lhs) local m = vim.fn.maparg(lhs, "i", false, true); return m.desc end
      return { tab = desc("<Tab>"), word = vim.fn.maparg("<M-Right>", "i"), line = desc("<M-C-Right>"),
               dismiss = desc("<C-x>d"), old_dismiss = vim.fn.maparg("<C-]>", "i"), trigger = desc("<M-\\>") }
    ]])
    eq(r.tab, "codefill: accept the suggestion", "<Tab>")
    eq(r.word, "", "accept_word = false leaves <M-Right> alone")
    eq(r.line, "codefill: accept the next line", "<M-C-Right>")
    eq(r.dismiss, "codefill: dismiss the suggestion", "custom dismiss key")
    eq(r.old_dismiss, "", "default dismiss key not mapped")
    eq(r.trigger, "codefill: ask for a suggestion", "trigger key")
    -- No suggestion is shown: the keys type what they always typed.
    c:lua([[vim.cmd("enew") ; vim.bo.expandtab = false]])
    c:input("ia")
    c:input("<Tab>")
    c:input("b<M-C-Right>c<Esc>")
    eq(c:lines(), { "a\tbc" }, "buffer after typing a<Tab>b<M-C-Right>c")
  end)

  t.case("accept splitting: next word and next line", function()
    local c = fresh()
    local r = c:lua([[
      local s = require("codefill.suggest")
      local w, l = s._next_word, s._next_line
      return {
        w("fibonacci(n - 1)"), w("(n - 1)"), w("  + fib"), w("\n    return x"), w(".join(parts)"),
        l("foo(1)\n    bar()"), l("\n    bar()\n    baz()"), l("single"), l(""),
      }
    ]])
    eq(r, { "fibonacci", "(", "  +", "\n    return", ".", "foo(1)", "\n    bar()", "single", "" }, "splits")
  end)

  t.case(":Codefill with an unknown subcommand reports it and does not raise", function()
    local c = fresh()
    local r = c:lua([[
      require("codefill").setup({})
      _G.test_notes = {}
      local ok, err = pcall(vim.cmd, "Codefill frobnicate")
      return { ok, tostring(err), _G.test_notes[1] and _G.test_notes[1].msg,
               vim.fn.getcompletion("Codefill ", "cmdline") }
    ]])
    eq(r[1], true, "no error raised: " .. r[2])
    assert(r[3] and r[3]:find("unknown subcommand frobnicate"), vim.inspect(r[3]))
    table.sort(r[4])
    eq(r[4], { "disable", "enable", "log", "restart", "status", "toggle" }, "completion of :Codefill")
  end)

  t.case("files of disabled filetypes and unnamed buffers start no server", function()
    local c = fresh()
    local r = c:lua([[
      require("codefill").setup({ server = { cmd = { "/bin/cat" } }, filetypes = { text = false } })
      local dir = vim.fn.tempname(); vim.fn.mkdir(dir, "p")
      vim.cmd("edit " .. dir .. "/notes.txt")
      vim.cmd("setfiletype text")
      vim.cmd("enew")
      return { #vim.lsp.get_clients({ name = "codefill" }), vim.b.codefill_root }
    ]])
    eq(r[1], 0, "no client")
  end)
end
