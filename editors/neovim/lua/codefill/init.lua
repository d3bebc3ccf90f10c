-- codefill.nvim: local, offline code completion (ghost text) from `codefill serve`.
--
--   require("codefill").setup({ ... })   -- see doc/codefill.txt for every option
--
-- Public functions: setup, accept, accept_word, accept_line, dismiss, trigger, next, prev,
-- toggle, is_visible, get_suggestion, status, statusline, restart, show_log, model, pick_model,
-- cancel_pull.
local config = require("codefill.config")
local focus = require("codefill.focus")
local models = require("codefill.models")
local server = require("codefill.server")
local suggest = require("codefill.suggest")

local M = {}
local api = vim.api

M.problems = {} -- the option problems reported by the last setup()
local group

-- Neovim 0.12's built-in inline completion (runtime/lua/vim/lsp/inline_completion.lua):
--   enable(enable?, filter?)  filter = { bufnr = n } or { client_id = n }; per-buffer switch
--   get(opts?) -> boolean     accepts the shown candidate (scheduled); false when none is shown
--   select(opts?)             cycles candidates
-- It asks textDocument/inlineCompletion by itself (InsertEnter, CursorMovedI, TextChangedP,
-- 200 ms debounce) and draws in the namespace "nvim.lsp.inline_completion".
local NATIVE_NS = "nvim.lsp.inline_completion"

local function native_available()
  local ok, ic = pcall(function()
    return vim.lsp.inline_completion
  end)
  return ok and type(ic) == "table" and type(ic.enable) == "function" and type(ic.get) == "function"
end
M._native_available = native_available

--- Whether the native (Neovim 0.12) inline completion is in use.
function M.uses_native()
  local n = server.config and server.config.native
  if n == "auto" then
    return native_available()
  end
  return n == true and native_available()
end

local function filetype_enabled(ft)
  local fts = server.config.filetypes
  if fts[ft] ~= nil then
    return fts[ft]
  end
  return fts["*"] ~= false
end

local function wanted(buf)
  return api.nvim_buf_is_valid(buf) and vim.bo[buf].buftype == ""
    and api.nvim_buf_get_name(buf) ~= "" and filetype_enabled(vim.bo[buf].filetype)
end

--- Switch the built-in inline completion on or off for a buffer that an initialized codefill
--- client is attached to (before initialization the client's capabilities are unknown and
--- enable() would not attach it; LspAttach calls this again).
local function native_enable(buf, on)
  local client = server.client(buf)
  if not client or not client.initialized then
    return false
  end
  local ok, err = pcall(vim.lsp.inline_completion.enable, on, { bufnr = buf })
  if not ok then
    server.log("vim.lsp.inline_completion.enable failed: " .. tostring(err))
  end
  return ok
end

local function attach(buf)
  if not wanted(buf) then
    return
  end
  local id = server.attach(buf)
  if id and M.uses_native() then
    native_enable(buf, server.enabled)
  end
end

local function native_visible(buf)
  local ns = api.nvim_get_namespaces()[NATIVE_NS]
  return ns ~= nil and #api.nvim_buf_get_extmarks(buf, ns, 0, -1, { limit = 1 }) > 0
end

--- Is a suggestion shown at the cursor?
function M.is_visible()
  local buf = api.nvim_get_current_buf()
  if M.uses_native() then
    return native_visible(buf)
  end
  return suggest.current(buf) ~= nil
end

--- The suggestion shown at the cursor: { text, row, col, index, count, candidates } (0-based
--- row, byte col; candidates[index] == text is the one shown of count), or nil.
function M.get_suggestion()
  local s = suggest.current()
  if not s then
    return nil
  end
  return { text = s.text, row = s.row, col = s.col, index = s.index, count = #s.candidates,
           candidates = vim.deepcopy(s.candidates) }
end

function M.accept()
  if M.uses_native() then
    local buf = api.nvim_get_current_buf()
    if native_visible(buf) then
      -- get() returns false when it has no candidate to accept (nil in early 0.12 builds).
      return vim.lsp.inline_completion.get({ bufnr = buf }) ~= false
    end
    return false
  end
  return suggest.accept("all")
end

function M.accept_word()
  return not M.uses_native() and suggest.accept("word")
end

function M.accept_line()
  return not M.uses_native() and suggest.accept("line")
end

function M.dismiss()
  if M.uses_native() then
    -- The built-in one has no public dismiss: hide its candidate (accept() then falls back to
    -- the key, since nothing is visible); its next automatic request shows a new one.
    local buf = api.nvim_get_current_buf()
    local ns = api.nvim_get_namespaces()[NATIVE_NS]
    if ns then
      api.nvim_buf_clear_namespace(buf, ns, 0, -1)
    end
    return
  end
  suggest.dismiss()
end

--- Show the next candidate (step 1, default) or the previous one (-1), wrapping around; asks
--- for a suggestion when none is shown. Returns true when another candidate is shown.
function M.cycle(step)
  step = step or 1
  if M.uses_native() then
    local ok, err = pcall(vim.lsp.inline_completion.select,
      { bufnr = api.nvim_get_current_buf(), count = step, wrap = true })
    if not ok then
      server.log("vim.lsp.inline_completion.select failed: " .. tostring(err))
    end
    return ok
  end
  return suggest.cycle(step)
end

--- The next candidate of the suggestion (wraps around to the first).
function M.next()
  return M.cycle(1)
end

--- The previous candidate of the suggestion (wraps around to the last).
function M.prev()
  return M.cycle(-1)
end

--- Ask for a suggestion now (also after a dismiss).
function M.trigger()
  if M.uses_native() then
    -- Neovim 0.12 has no public "request now" (get() only accepts): run the automatic request
    -- of the buffer's inline-completion autocommands (augroup "nvim.lsp.inline_completion:<buf>").
    local buf = api.nvim_get_current_buf()
    local ok, err = pcall(api.nvim_exec_autocmds, "CursorMovedI",
      { group = NATIVE_NS .. ":" .. buf, buffer = buf, modeline = false })
    if not ok then
      server.log("native trigger failed: " .. tostring(err))
    end
    return ok
  end
  suggest.request(true)
  return true
end

--- Turn suggestions on or off (all buffers; the server is told too). Returns the new state.
function M.toggle(on)
  if on == nil then
    on = not server.enabled
  end
  server.enabled = on
  if not on then
    suggest.clear_all()
  end
  if M.uses_native() then
    for _, client in ipairs(server.clients()) do
      for buf in pairs(client.attached_buffers or {}) do
        native_enable(buf, on)
      end
    end
  end
  server.push_settings()
  server.notify(on and "suggestions on" or "suggestions off")
  vim.cmd("redrawstatus")
  return on
end

--- A short status for statuslines: "codefill: ready", "codefill: loading 40%", ...
function M.statusline()
  local st = server.state
  if not server.config then
    return ""
  end
  local pulling = models.statusline()
  if pulling then
    return pulling
  end
  if not server.enabled then
    return "codefill: off"
  end
  if st.model == "loading" then
    return "codefill: loading" .. (st.percent and string.format(" %d%%", st.percent) or "")
  end
  if st.model == "failed" or st.model == "error" then
    return "codefill: error"
  end
  if st.model == "ready" and st.remote and st.remote.health == "failing" then
    return "codefill: remote failing"
  end
  if st.model == "ready" and server.generating > 0 then
    return "codefill: generating"
  end
  if st.model == "ready" and st.remote then
    return "codefill: ready (remote)"
  end
  return "codefill: " .. st.model
end

--- "prefill: focus 3, done 2, ..." from the status's prefill counters (focus and done first,
--- then the other numbers by name), or nil.
local function prefill_summary(prefill)
  if type(prefill) ~= "table" then
    return nil
  end
  local keys = {}
  for k, v in pairs(prefill) do
    if type(v) == "number" and k ~= "focus" and k ~= "done" then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  table.insert(keys, 1, "done")
  table.insert(keys, 1, "focus")
  local parts = {}
  for _, k in ipairs(keys) do
    local v = prefill[k]
    if type(v) == "number" then
      parts[#parts + 1] = string.format("%s %d", (k:gsub("_", " ")), math.floor(v + 0.5))
    end
  end
  return #parts > 0 and ("prefill: " .. table.concat(parts, ", ")) or nil
end
M._prefill_summary = prefill_summary

local function fmt_status(result)
  local lines = {}
  local function add(...)
    lines[#lines + 1] = string.format(...)
  end
  add("codefill %s: %s", result.version or "?", M.statusline())
  local m = result.model or {}
  add("model: %s (%s, template %s) %s", tostring(m.model or "?"), tostring(m.architecture or "?"),
    tostring(m.template or "?"), tostring(m.state or "?"))
  if m.error and m.error ~= vim.NIL and m.error ~= "" then
    add("model error: %s", m.error)
  end
  if m.backend and m.backend ~= vim.NIL and m.backend ~= "local" then
    local r = type(m.remote) == "table" and m.remote or {}
    local function v(x)
      return (x == nil or x == vim.NIL) and "?" or tostring(x)
    end
    add("backend: remote engine %s at %s, health %s (errors %s, retries %s, fallbacks %s%s)",
      tostring(m.backend), v(m.url), v(r.health), v(r.errors), v(r.retries), v(r.fallbacks),
      (m.fallback ~= nil and m.fallback ~= vim.NIL) and ", falls back to the local model" or "")
    if r.last_error and r.last_error ~= vim.NIL and r.last_error ~= "" then
      add("remote error: %s", r.last_error)
    end
  elseif m.backend == "local" then
    add("backend: local llama.cpp engine")
  end
  local c = result.completion or {}
  local counters = c.counters or {}
  add("requests %s, served %s, empty %s, model calls %s, cache hits %s, typing-through %s",
    tostring(counters.requests), tostring(counters.served), tostring(counters.empty),
    tostring(counters.model_calls), tostring(counters.cache_hits), tostring(counters.typing_through))
  if c.last_latency_ms and c.last_latency_ms ~= vim.NIL then
    add("last latency %.0f ms", c.last_latency_ms)
  end
  if c.last_empty_reason and c.last_empty_reason ~= vim.NIL then
    add("last empty answer: %s", c.last_empty_reason)
  end
  local prefill = prefill_summary(result.prefill)
  if prefill then
    add("%s", prefill)
  end
  return table.concat(lines, "\n")
end

--- :Codefill status. cb(status_table|nil, text) when given; otherwise the text is shown.
function M.status(cb)
  if server.state.error and #server.clients() == 0 then
    local text = "codefill: " .. server.state.error
    if cb then
      cb(nil, text)
    else
      vim.notify(text, vim.log.levels.ERROR)
    end
    return
  end
  server.refresh_status(nil, function(result, err)
    local text = result and fmt_status(result) or ("codefill: " .. (err or "no status"))
    if cb then
      cb(result, text)
    else
      vim.notify(text, result and vim.log.levels.INFO or vim.log.levels.WARN)
    end
  end)
end

function M.restart()
  suggest.clear_all()
  server.restart()
end

--- :Codefill log: the server's log messages and the client's events in a scratch buffer.
function M.show_log()
  local lines = vim.deepcopy(server.log_lines())
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Neovim's LSP log (server stderr): " .. vim.lsp.get_log_path()
  vim.cmd("botright new")
  local buf = api.nvim_get_current_buf()
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].swapfile = false
  api.nvim_buf_set_name(buf, "codefill://log/" .. buf)
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  api.nvim_win_set_cursor(0, { math.max(1, #lines - 2), 0 })
end

--- Use a model of the registry by name (NAME, NAME:QUANT or hf://OWNER/REPO/FILE.gguf; "" is
--- the embedded default): pulled first, with progress in the statusline, when not on disk yet.
function M.model(name)
  models.choose(name)
end

--- Choose a model of the registry with vim.ui.select.
function M.pick_model()
  models.pick()
end

--- Stop the model download in progress (pulling the same name again resumes it).
function M.cancel_pull()
  return models.cancel()
end

local subcommands = {
  status = function() M.status() end,
  toggle = function() M.toggle() end,
  enable = function() M.toggle(true) end,
  disable = function() M.toggle(false) end,
  restart = function() M.restart() end,
  log = function() M.show_log() end,
  model = function(args) models.command(args) end,
  next = function() M.next() end,
  prev = function() M.prev() end,
}

local function map_keys(keys)
  local function imap(lhs, fn, desc, fallback, partial)
    if type(lhs) ~= "string" or lhs == "" then
      return
    end
    if fallback then
      -- Accept when a suggestion is shown, else the key does what it did before (also for the
      -- word/line accepts under the built-in inline completion, which has none).
      vim.keymap.set("i", lhs, function()
        if M.is_visible() and not (partial and M.uses_native()) then
          return "<Cmd>lua require('codefill')." .. fn .. "()<CR>"
        end
        return lhs
      end, { expr = true, silent = true, desc = desc })
    else
      vim.keymap.set("i", lhs, "<Cmd>lua require('codefill')." .. fn .. "()<CR>",
        { silent = true, desc = desc })
    end
  end
  imap(keys.accept, "accept", "codefill: accept the suggestion", true)
  imap(keys.accept_word, "accept_word", "codefill: accept the next word", true, true)
  imap(keys.accept_line, "accept_line", "codefill: accept the next line", true, true)
  imap(keys.dismiss, "dismiss", "codefill: dismiss the suggestion", true)
  imap(keys.trigger, "trigger", "codefill: ask for a suggestion", false)
  imap(keys.next, "next", "codefill: show the next candidate", false)
  imap(keys.prev, "prev", "codefill: show the previous candidate", false)
end

local function autocmds()
  group = api.nvim_create_augroup("codefill", { clear = true })
  api.nvim_create_autocmd({ "FileType", "BufReadPost", "BufNewFile" }, {
    group = group,
    callback = function(ev)
      attach(ev.buf)
    end,
  })
  -- Where the user is looking (codefill/didFocus), with either renderer.
  focus.autocmds(group)
  if M.uses_native() then
    -- The client is initialized now: switch the built-in inline completion on for the buffer.
    api.nvim_create_autocmd("LspAttach", {
      group = group,
      callback = function(ev)
        local client = vim.lsp.get_client_by_id(ev.data and ev.data.client_id or -1)
        if client and client.name == "codefill" then
          native_enable(ev.buf, server.enabled)
        end
      end,
    })
    return
  end
  api.nvim_create_autocmd("TextChangedI", {
    group = group,
    callback = function(ev)
      if vim.b[ev.buf].codefill_root then
        suggest.on_text_changed(ev.buf)
      end
    end,
  })
  api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    callback = function(ev)
      suggest.on_cursor_moved(ev.buf)
    end,
  })
  api.nvim_create_autocmd("InsertEnter", {
    group = group,
    callback = function(ev)
      if vim.b[ev.buf].codefill_root and server.config.trigger.auto then
        suggest.schedule_request()
      end
    end,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    callback = function(ev)
      suggest.cancel(ev.buf)
      suggest.clear(ev.buf, true)
    end,
  })
  api.nvim_create_autocmd({ "BufUnload", "BufDelete" }, {
    group = group,
    callback = function(ev)
      suggest.detach(ev.buf)
    end,
  })
  -- The completion popup menu: hide the ghost text while it is open (ghost.pum = "hide").
  api.nvim_create_autocmd("CompleteChanged", {
    group = group,
    callback = function(ev)
      if server.config.ghost.pum == "hide" then
        suggest.cancel(ev.buf)
        suggest.clear(ev.buf, false)
      end
    end,
  })
  -- Text changes while the menu is open (inserting the selected item): with ghost.pum = "show"
  -- they are handled like typing.
  api.nvim_create_autocmd("TextChangedP", {
    group = group,
    callback = function(ev)
      if vim.b[ev.buf].codefill_root and server.config.ghost.pum == "show" then
        suggest.on_text_changed(ev.buf)
      end
    end,
  })
  api.nvim_create_autocmd("CompleteDone", {
    group = group,
    callback = function(ev)
      if vim.b[ev.buf].codefill_root and server.config.trigger.auto then
        suggest.schedule_request()
      end
    end,
  })
end

--- Configure and start codefill. Safe to call again (the new options replace the old ones).
function M.setup(opts)
  local cfg, problems = config.resolve(opts)
  M.problems = problems
  for _, p in ipairs(problems) do
    vim.notify("codefill: " .. p, vim.log.levels.WARN)
  end
  if cfg.native == true and not native_available() then
    local p = "native = true needs vim.lsp.inline_completion (Neovim 0.12); using codefill's renderer"
    problems[#problems + 1] = p
    vim.notify("codefill: " .. p, vim.log.levels.WARN)
  end
  if vim.fn.has("nvim-0.11") ~= 1 then
    local p = "needs Neovim 0.11 or newer; not started"
    problems[#problems + 1] = p
    vim.notify("codefill: " .. p, vim.log.levels.ERROR)
    return
  end
  local restart = server.config ~= nil and #server.clients() > 0
  server.config = cfg
  server.enabled = cfg.enabled
  server.set_handler("codefill/partial", suggest.on_partial)
  if vim.fn.hlexists(cfg.ghost.hl_group) == 0 or vim.tbl_isempty(api.nvim_get_hl(0, { name = cfg.ghost.hl_group })) then
    api.nvim_set_hl(0, cfg.ghost.hl_group, { link = "Comment", default = true })
  end
  map_keys(cfg.keymaps)
  autocmds()
  api.nvim_create_user_command("Codefill", function(a)
    local name = a.fargs[1] or "status"
    local fn = subcommands[name]
    if not fn then
      vim.notify("codefill: unknown subcommand " .. name
        .. " (status, toggle, enable, disable, restart, log, model, next, prev)", vim.log.levels.ERROR)
      return
    end
    if name ~= "model" and #a.fargs > 1 then
      vim.notify("codefill: :Codefill " .. name .. " takes no argument", vim.log.levels.ERROR)
      return
    end
    fn(vim.list_slice(a.fargs, 2))
  end, {
    nargs = "*",
    complete = function(lead, line, pos)
      local words = vim.split((line:sub(1, pos):gsub("^%s+", "")), "%s+")
      local choices
      if #words <= 2 then
        choices = vim.tbl_keys(subcommands)
      elseif #words == 3 and words[2] == "model" then
        choices = models.complete_names()
      else
        return {}
      end
      table.sort(choices)
      return vim.tbl_filter(function(c)
        return vim.startswith(c, lead)
      end, choices)
    end,
    desc = "codefill: status | toggle | enable | disable | restart | log | model [NAME | cancel] | next | prev",
  })
  if restart then
    M.restart()
  else
    for _, buf in ipairs(api.nvim_list_bufs()) do
      if api.nvim_buf_is_loaded(buf) then
        attach(buf)
      end
    end
  end
end

return M
