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

  t.case("settings.remote passes validation and reaches the server (initializationOptions, configuration)", function()
    local c = fresh()
    local r = c:lua([[
      local cfg, problems = require("codefill.config").resolve({
        settings = { remote = { url = "http://gpu-box:8080", api = "llama-server", fallback = true } } })
      local started
      vim.lsp.start = function(config) started = config; return nil end
      require("codefill").setup({ server = { cmd = { "/bin/cat" } },
        settings = { remote = { url = "http://gpu-box:8080", fallback = true } } })
      vim.cmd("edit fib.py")
      return { problems = problems, remote = cfg.settings.remote,
               init = started and started.init_options.remote,
               conf = started and started.settings.codefill.remote,
               pushed = require("codefill.server").settings().remote }
    ]])
    eq(r.problems, {}, "problems")
    eq(r.remote, { url = "http://gpu-box:8080", api = "llama-server", fallback = true }, "merged settings.remote")
    eq(r.init, { url = "http://gpu-box:8080", fallback = true }, "initializationOptions.remote")
    eq(r.conf, { url = "http://gpu-box:8080", fallback = true }, "workspace/configuration codefill.remote")
    eq(r.pushed, { url = "http://gpu-box:8080", fallback = true }, "didChangeConfiguration settings.remote")
  end)

  t.case("statusline and :checkhealth wording for a remote engine: ready, failing, unknown (status given)", function()
    local c = fresh()
    local r = c:lua([[
      require("codefill").setup({ server = { cmd = { "/bin/cat" } } })
      local server, codefill = require("codefill.server"), require("codefill")
      local out = {}
      server.state = { model = "ready", backend = "llama-server", url = "http://gpu-box:8080",
                       remote = { health = "failing", last_error = "cannot reach" } }
      out.failing = codefill.statusline()
      server.generating = 1
      out.failing_generating = codefill.statusline()
      server.generating = 0
      server.state.remote.health = "ok"
      out.ok = codefill.statusline()
      server.state = { model = "ready" }
      out["local"] = codefill.statusline()
      local calls = {}
      local h = {}
      for _, k in ipairs({ "ok", "warn", "info", "error" }) do
        h[k] = function(msg, advice) calls[#calls + 1] = { k, msg, advice } end
      end
      local health = require("codefill.health")
      health.report_remote(h, { backend = "llama-server", url = "http://gpu-box:8080", fallback = vim.NIL,
        remote = { health = "failing", last_error = "cannot reach the remote engine at http://gpu-box:8080: connection refused",
                   errors = 2, retries = 4, fallbacks = 0 } })
      health.report_remote(h, { backend = "openai", url = "http://h:8000", remote = { health = "ok", last_error = vim.NIL } })
      health.report_remote(h, { backend = "remote", url = "http://h:8000" })
      out.health = calls
      return out
    ]])
    eq(r.failing, "codefill: remote failing", "statusline while failing")
    eq(r.failing_generating, "codefill: remote failing", "failing wins over generating")
    eq(r.ok, "codefill: ready (remote)", "statusline when the remote answers")
    eq(r["local"], "codefill: ready", "statusline with the local engine")
    local h = r.health
    eq({ h[1][1], h[2][1], h[3][1] }, { "warn", "ok", "info" }, "health levels for failing, ok, unknown")
    assert(h[1][2]:find("backend: remote engine llama-server at http://gpu-box:8080, health failing (errors 2, retries 4, fallbacks 0): cannot reach the remote engine", 1, true), h[1][2])
    assert(vim.iter(h[1][3]):any(function(a) return a:find("curl http://gpu-box:8080/health", 1, true) ~= nil end), vim.inspect(h[1][3]))
    assert(vim.iter(h[1][3]):any(function(a) return a:find("remote.fallback = true", 1, true) ~= nil end), vim.inspect(h[1][3]))
    assert(h[2][2]:find("openai at http://h:8000, health ok", 1, true), h[2][2])
    assert(h[3][2]:find("health unknown", 1, true), h[3][2])
  end)

  t.case("Neovim 0.11: native = \"auto\" picks codefill's own renderer (no vim.lsp.inline_completion)", function()
    local c = fresh()
    local r = c:lua([[
      require("codefill").setup({ server = { cmd = { "/bin/cat" } } })
      local codefill = require("codefill")
      return { has = vim.fn.has("nvim-0.12"), native = codefill.uses_native(), available = codefill._native_available(),
               own = #vim.api.nvim_get_autocmds({ group = "codefill", event = "TextChangedI" }) }
    ]])
    if r.has == 1 then
      eq({ r.available, r.native }, { true, true }, "Neovim 0.12 uses its built-in inline completion")
    else
      eq({ r.available, r.native }, { false, false }, "no built-in inline completion on 0.11")
      eq(r.own, 1, "codefill's TextChangedI handler is installed")
    end
  end)

  -- A unit test of codefill's wiring to Neovim 0.12's vim.lsp.inline_completion, run on 0.11 with
  -- a stub of that module (the signatures of runtime/lua/vim/lsp/inline_completion.lua on the
  -- 0.12 branch) and an in-process fake language server; it does not exercise a real Neovim 0.12.
  t.case("Neovim 0.12 wiring against a stubbed vim.lsp.inline_completion (not a real 0.12)", function()
    local c = fresh()
    local r = c:lua([[
      local calls = {}
      vim.lsp.inline_completion = {
        enable = function(enable, filter)
          vim.validate("enable", enable, "boolean", true)
          vim.validate("filter", filter, "table", true)
          calls[#calls + 1] = { "enable", enable, filter and filter.bufnr }
        end,
        is_enabled = function() return true end,
        get = function(opts)
          calls[#calls + 1] = { "get", opts and opts.bufnr }
          return true
        end,
        select = function() end,
      }
      -- An in-process language server that only initializes (cmd as a function, as Neovim's
      -- own LSP tests do).
      local function fake(dispatchers)
        local closing, id = false, 0
        return {
          request = function(method, _, callback)
            id = id + 1
            if method == "initialize" then
              callback(nil, { capabilities = { inlineCompletionProvider = true, textDocumentSync = 2 } })
            elseif method == "codefill/status" then
              callback(nil, { model = { state = "ready", backend = "local" } })
            else
              callback(nil, vim.NIL)
            end
            return true, id
          end,
          notify = function(method)
            if method == "exit" then dispatchers.on_exit(0, 15) end
            return true
          end,
          is_closing = function() return closing end,
          terminate = function() closing = true end,
        }
      end
      local server = require("codefill.server")
      require("codefill").setup({})
      server.resolve_cmd = function() return fake, nil end
      local codefill = require("codefill")
      vim.cmd("edit fib.py")
      local buf = vim.api.nvim_get_current_buf()
      vim.wait(5000, function()
        local cl = server.client(buf)
        return cl ~= nil and cl.initialized and #calls > 0
      end, 20)
      local out = { native = codefill.uses_native(), buf = buf, after_attach = vim.deepcopy(calls),
                    initialized = server.client(buf) ~= nil and server.client(buf).initialized,
                    own = #vim.api.nvim_get_autocmds({ group = "codefill", event = "TextChangedI" }) }
      -- A candidate drawn by the built-in renderer (its namespace), at the cursor.
      local ns = vim.api.nvim_create_namespace("nvim.lsp.inline_completion")
      vim.api.nvim_buf_set_extmark(buf, ns, 0, 0, { virt_text = { { "x", "Comment" } }, virt_text_pos = "inline" })
      out.visible = codefill.is_visible()
      calls = {}
      out.accepted = codefill.accept()
      out.after_accept = vim.deepcopy(calls)
      local word = vim.fn.maparg("<M-Right>", "i", false, true).callback()
      local tab = vim.fn.maparg("<Tab>", "i", false, true).callback()
      out.word_key, out.tab_key = word, tab
      codefill.dismiss()
      out.visible_after_dismiss = codefill.is_visible()
      out.tab_after_dismiss = vim.fn.maparg("<Tab>", "i", false, true).callback()
      out.trigger_without_group = codefill.trigger()
      local fired = false
      vim.api.nvim_create_augroup("nvim.lsp.inline_completion:" .. buf, { clear = true })
      vim.api.nvim_create_autocmd("CursorMovedI", { group = "nvim.lsp.inline_completion:" .. buf, buffer = buf,
        callback = function() fired = true end })
      out.trigger = codefill.trigger()
      out.fired = fired
      calls = {}
      codefill.toggle(false)
      codefill.toggle(true)
      out.toggle = vim.deepcopy(calls)
      return out
    ]])
    eq(r.native, true, "uses_native with the module present")
    eq(r.own, 0, "codefill's own renderer is not installed")
    -- attach() runs on FileType and BufReadPost, and LspAttach follows; enable() is idempotent.
    assert(#r.after_attach >= 1, "enable() was not called")
    for _, call in ipairs(r.after_attach) do
      eq(call, { "enable", true, r.buf }, "enable(true, { bufnr }) once the client is initialized")
    end
    eq(r.initialized, true, "the fake client initialized")
    eq(r.visible, true, "a candidate in the built-in namespace counts as visible")
    eq(r.accepted, true, "accept() returns get()'s result")
    eq(r.after_accept, { { "get", r.buf } }, "accept() calls get({ bufnr })")
    eq(r.word_key, "<M-Right>", "next-word key falls back (the built-in one has no partial accepts)")
    eq(r.tab_key, "<Cmd>lua require('codefill').accept()<CR>", "Tab accepts while a candidate is shown")
    eq(r.visible_after_dismiss, false, "dismiss hides the built-in candidate")
    eq(r.tab_after_dismiss, "<Tab>", "then Tab is a Tab again")
    eq(r.trigger_without_group, false, "trigger without the built-in autocommands reports failure")
    eq({ r.trigger, r.fired }, { true, true }, "trigger runs the buffer's automatic request")
    eq(r.toggle, { { "enable", false, r.buf }, { "enable", true, r.buf } }, "toggle switches the buffer off and on")
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
    eq(r[4], { "disable", "enable", "log", "model", "next", "prev", "restart", "status", "toggle" }, "completion of :Codefill")
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
