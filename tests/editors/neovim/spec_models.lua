-- :Codefill model in a real Neovim against the real `codefill serve`, with the hub replaced by
-- tests/fake_hub.py (HF_ENDPOINT in this Neovim's environment, which the child and the server
-- inherit). The registry's codegemma-2b is served as a tiny runnable CodeGemma-layout model
-- that answers "nacci", slowly enough (a byte rate) to watch and cancel its download.
local Child = require("child")

local WS = assert(vim.env.CODEFILL_TEST_WORKSPACE, "CODEFILL_TEST_WORKSPACE is not set")
local CMD = vim.json.decode((assert(vim.env.CODEFILL_TEST_SERVER_CMD, "CODEFILL_TEST_SERVER_CMD is not set")))
local REGISTRY = vim.json.decode((assert(vim.env.CODEFILL_TEST_MODELS, "CODEFILL_TEST_MODELS is not set")))
local MODEL = "codegemma-2b"

local function eq(a, b, what)
  if not vim.deep_equal(a, b) then
    error(string.format("%s: expected %s, got %s", what or "value", vim.inspect(b), vim.inspect(a)), 2)
  end
end

-- In the child: vim.ui.select records what it offers and picks the item named _G.pick (none
-- when _G.pick is nil, as when the user closes the menu).
local SELECT = [[
  _G.offered = nil
  vim.ui.select = function(items, opts, on_choice)
    local texts = {}
    for _, item in ipairs(items) do texts[#texts + 1] = opts.format_item(item) end
    _G.offered = { names = vim.tbl_map(function(i) return i.name end, items), texts = texts,
                   prompt = opts.prompt }
    local chosen
    for _, item in ipairs(items) do
      if item.name == _G.pick then chosen = item end
    end
    vim.schedule(function() on_choice(chosen) end)
  end
]]

-- The server's codefill/status, asked now.
local STATUS = [[
  local out
  require("codefill.server").refresh_status(nil, function(r) out = r end)
  vim.wait(5000, function() return out ~= nil end, 20)
  return out
]]

return function(t)
  local c = Child.new({ cwd = WS })
  c.diagnose = [[
    local ok, server = pcall(require, "codefill.server")
    if not ok then return "plugin not loaded" end
    local log = server.log_lines()
    local m = require("codefill.models")
    return vim.inspect({ mode = vim.api.nvim_get_mode(), line = vim.api.nvim_get_current_line(),
      state = server.state, pull = m.pull, last = m.last, loaded = m.loaded,
      statusline = require("codefill").statusline(), notes = _G.test_notes,
      log = { unpack(log, math.max(1, #log - 25)) } })
  ]]
  t.after_all(function()
    c:stop()
  end)

  local function notes_with(text, level)
    local found = {}
    for _, n in ipairs(c:notes()) do
      if n.msg:find(text, 1, true) and (level == nil or n.level == level) then
        found[#found + 1] = n
      end
    end
    return found
  end

  -- Wait until the model chosen last (models.loaded) is loaded; returns codefill/status.
  local function wait_loaded(name, architecture, template)
    local st = c:wait_lua(([[
      local l = require("codefill.models").loaded
      if not (l and l.name == %q) then return nil end
      return (function() %s end)()
    ]]):format(name, STATUS), 180000, (name == "" and "the embedded model" or name) .. " loaded")
    eq(st.model.state, "ready", "model state")
    eq({ st.model.architecture, st.model.template }, { architecture, template }, "architecture and template")
    return st
  end

  t.case(":Codefill model without a name offers the registry in vim.ui.select; names complete on the command line", function()
    c:lua([[
      require("codefill").setup({ server = { cmd = ... },
        -- A generous time budget: on a loaded machine the default 5 s cut suggestions to nothing.
        settings = { engine = { time_budget_ms = 60000 } } })
      vim.cmd("edit fib.py")
    ]], CMD)
    c:wait_lua([[return require("codefill.server").state.model == "ready"]], 180000, "embedded model ready")
    c:lua(SELECT)
    c:lua([[_G.pick = nil; vim.cmd("Codefill model")]])
    local offered = c:wait_lua("return _G.offered", 10000, "vim.ui.select called")
    eq(offered.prompt, "codefill model", "prompt")
    for _, name in ipairs(REGISTRY) do
      assert(vim.tbl_contains(offered.names, name), name .. " offered: " .. vim.inspect(offered.names))
    end
    eq(#offered.names, #REGISTRY + 1, "the registry and the embedded default")
    eq(offered.names[#offered.names], "", "the embedded default comes last")
    assert(offered.texts[#offered.texts]:find("embedded default", 1, true)
      and offered.texts[#offered.texts]:find("in use", 1, true), offered.texts[#offered.texts])
    local rows = c:lua("return require('codefill.models').rows")
    local recommended = vim.tbl_filter(function(r) return r.recommended end, rows)
    if #recommended > 0 then
      eq(offered.names[1], recommended[1].name, "the recommended model comes first")
      assert(offered.texts[1]:find("recommended", 1, true), offered.texts[1])
    end
    local i = assert(vim.iter(ipairs(offered.names)):find(function(_, n) return n == MODEL end))
    local text = offered.texts[i]
    -- name, parameters, default quantization and its size, license; not pulled yet
    assert(text:find("^codegemma%-2b  2%.5B  Q4_K_M 1%.6 GB  gemma") and not text:find("pulled"), text)
    vim.wait(500)
    eq(c:lua("return require('codefill.models').pull"), vim.NIL, "closing the menu pulls nothing")
    local r = c:lua([[
      return { all = vim.fn.getcompletion("Codefill model ", "cmdline"),
               code = vim.fn.getcompletion("Codefill model code", "cmdline"),
               sub = vim.fn.getcompletion("Codefill mo", "cmdline") }
    ]])
    assert(vim.tbl_contains(r.all, "cancel"), vim.inspect(r.all))
    for _, name in ipairs(REGISTRY) do
      assert(vim.tbl_contains(r.all, name), name .. " completes: " .. vim.inspect(r.all))
    end
    eq(r.code, { MODEL }, "names starting with code")
    eq(r.sub, { "model" }, "the subcommand completes")
  end)

  t.case("an unknown name: the server's one-line error at ERROR level, the setting is unchanged", function()
    c:lua([[_G.test_notes = {}; vim.cmd("Codefill model qwen9")]])
    local last = c:wait_lua([[
      local l = require("codefill.models").last
      return l and l.name == "qwen9" and l
    ]], 30000, "the pull of qwen9 ended")
    eq(last.outcome, "failed", "outcome")
    local errors = notes_with("unknown model", vim.log.levels.ERROR)
    eq(#errors, 1, "one error notification: " .. vim.inspect(c:notes()))
    assert(not errors[1].msg:find("\n"), "one line: " .. errors[1].msg)
    eq(c:lua("return require('codefill.server').config.settings.engine.model"), vim.NIL, "engine.model")
    eq(c:lua("return require('codefill').statusline()"), "codefill: ready", "statusline")
  end)

  t.case(":Codefill model cancel stops a pull: it ends as cancelled, the setting is unchanged", function()
    c:lua([[_G.test_notes = {}; vim.cmd("Codefill model ]] .. MODEL .. [[")]])
    local seen = c:wait_lua([[
      local s = require("codefill").statusline()
      local pct = tonumber(s:match("^codefill: pulling codegemma%-2b (%d+)%%$"))
      return pct and pct >= 10 and s
    ]], 60000, "the pull at 10% or more in the statusline")
    local pending = c:lua([[
      local p = require("codefill.models").pull
      local client = vim.lsp.get_client_by_id(p.client_id)
      return { id = p.id, request = client.requests[p.id] }
    ]])
    eq(pending.request.method, "codefill/pullModel", "the pending request")
    eq(#notes_with("pulling " .. MODEL, vim.log.levels.INFO), 1, "a notification at the start")
    c:lua([[vim.cmd("Codefill model cancel")]])
    local last = c:wait_lua(([[
      local l = require("codefill.models").last
      return l and l.name == %q and l
    ]]):format(MODEL), 30000, "the pull ended")
    eq(last.outcome, "cancelled", "outcome")
    assert(type(last.message) == "string" and last.message:find("^cancelled"),
      "the server ended the pull's progress as cancelled: " .. vim.inspect(last.message))
    c:wait_lua(([[
      local client = vim.lsp.get_clients({ name = "codefill" })[1]
      return client.requests[%d] == nil
    ]]):format(pending.id), 10000, "the request is no longer pending (the server answered the cancel)")
    eq(#notes_with("pull cancelled; :Codefill model " .. MODEL .. " resumes", vim.log.levels.INFO), 1,
      "the cancel notification: " .. vim.inspect(c:notes()))
    eq(c:lua("return require('codefill').statusline()"), "codefill: ready", "statusline after the cancel")
    eq(c:lua("return require('codefill.server').config.settings.engine.model"), vim.NIL, "engine.model")
    assert(seen:find("pulling", 1, true))
  end)

  t.case(":Codefill model NAME resumes the pull with progress in the statusline, switches to it, and its suggestions appear", function()
    c:lua([[_G.test_notes = {}; require("codefill.models").last = nil; vim.cmd("Codefill model ]] .. MODEL .. [[")]])
    -- Sample the statusline as a user's would be redrawn, until the pull ends.
    local shown = {}
    local ok = vim.wait(120000, function()
      local r = c:lua([[return { s = require("codefill").statusline(), ended = require("codefill.models").last ~= nil }]])
      shown[#shown + 1] = r.s
      return r.ended
    end, 50)
    assert(ok, "the pull ended: " .. vim.inspect(shown))
    local percents = {}
    for _, s in ipairs(shown) do
      local pct = tonumber(s:match("^codefill: pulling codegemma%-2b (%d+)%%$"))
      if pct and not vim.tbl_contains(percents, pct) then
        percents[#percents + 1] = pct
      end
    end
    assert(#percents >= 2 and percents[#percents] > percents[1],
      "the statusline showed the pull's progress: " .. vim.inspect(percents))
    local last = c:lua("return require('codefill.models').last")
    eq(last.outcome, "pulled", "outcome")
    local done = notes_with("pulled " .. MODEL .. " to ", vim.log.levels.INFO)
    eq(#done, 1, "a notification at the end: " .. vim.inspect(c:notes()))
    assert(done[1].msg:find(last.path, 1, true) and vim.fn.filereadable(last.path) == 1, done[1].msg)
    local settings = c:lua([[
      local client = vim.lsp.get_clients({ name = "codefill" })[1]
      return { mine = require("codefill.server").config.settings.engine.model,
               client = client.settings.codefill.engine.model }
    ]])
    eq(settings, { mine = MODEL, client = MODEL }, "engine.model set and sent")
    local st = wait_loaded(MODEL, "gemma", "codegemma")
    eq(vim.fn.resolve(st.model.model), vim.fn.resolve(last.path), "the server loaded the pulled file")
    eq(#notes_with(MODEL .. " ready (template codegemma)", vim.log.levels.INFO), 1, "ready notification")
    eq(c:lua("return require('codefill').statusline()"), "codefill: ready", "statusline")
    -- Its suggestion, as ghost text in the buffer.
    c:input("4GA")
    c:type("fibo")
    local g = c:wait_lua([[
      local s = require("codefill").get_suggestion()
      if not s or require("codefill.server").generating > 0 then return nil end
      local ns = require("codefill.suggest").ns
      local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })
      return { text = s.text, drawn = marks[1] and marks[1][4].virt_text[1][1] }
    ]], 120000, "ghost text from " .. MODEL)
    eq(g.text, "nacci", "the model's suggestion")
    eq(g.drawn, "nacci", "drawn as ghost text")
    c:input("<Tab>")
    eq(c:lines()[4], "    return fibonacci", "accepted")
    c:input("<Esc>")
  end)

  t.case("vim.ui.select: the embedded default switches back; a pulled model switches without a download", function()
    c:lua(SELECT)
    c:lua([[_G.test_notes = {}; _G.pick = ""; vim.cmd("Codefill model")]])
    wait_loaded("", "gemma3", "plain")
    eq(c:lua("return require('codefill.server').config.settings.engine.model"), "", "engine.model")
    local offered = c:lua("return _G.offered")
    local i = assert(vim.iter(ipairs(offered.names)):find(function(_, n) return n == MODEL end))
    assert(offered.texts[i]:find("pulled", 1, true) and offered.texts[i]:find("in use", 1, true),
      "marked pulled and in use: " .. offered.texts[i])
    c:lua([[_G.test_notes = {}; _G.pick = ...; vim.cmd("Codefill model")]], MODEL)
    wait_loaded(MODEL, "gemma", "codegemma")
    eq(#notes_with("pulling", nil), 0, "no download: " .. vim.inspect(c:notes()))
    eq(c:lua("return require('codefill.models').last.outcome"), "pulled", "no new pull")
    offered = c:lua("return _G.offered")
    assert(offered.texts[#offered.texts]:find("in use", 1, true), "the embedded default in use: "
      .. offered.texts[#offered.texts])
    for _, n in ipairs(c:notes()) do
      assert(n.level < vim.log.levels.WARN, "unexpected warning: " .. n.msg)
    end
  end)
end
