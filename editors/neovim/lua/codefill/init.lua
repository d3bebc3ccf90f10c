-- codefill.nvim: local, offline code completion (ghost text) from `codefill serve`.
--
--   require("codefill").setup({ ... })   -- see doc/codefill.txt for every option
--
-- Public functions: setup, accept, accept_word, accept_line, dismiss, trigger, toggle,
-- is_visible, get_suggestion, status, statusline, restart, show_log.
local config = require("codefill.config")
local server = require("codefill.server")
local suggest = require("codefill.suggest")

local M = {}
local api = vim.api

M.problems = {} -- the option problems reported by the last setup()
local group

local function native_available()
  return vim.lsp.inline_completion ~= nil and type(vim.lsp.inline_completion.enable) == "function"
end

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

local function attach(buf)
  if not wanted(buf) then
    return
  end
  local id = server.attach(buf)
  if id and M.uses_native() then
    pcall(vim.lsp.inline_completion.enable, true, { bufnr = buf })
  end
end

local function native_visible(buf)
  local ns = api.nvim_get_namespaces()["nvim.lsp.inline_completion"]
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

--- The suggestion shown at the cursor: { text, row, col } (0-based row, byte col), or nil.
function M.get_suggestion()
  local s = suggest.current()
  return s and { text = s.text, row = s.row, col = s.col } or nil
end

function M.accept()
  if M.uses_native() then
    if native_visible(api.nvim_get_current_buf()) then
      vim.lsp.inline_completion.get()
      return true
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
  suggest.dismiss()
end

--- Ask for a suggestion now (also after a dismiss).
function M.trigger()
  if M.uses_native() then
    vim.lsp.inline_completion.get()
  else
    suggest.request(true)
  end
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
        pcall(vim.lsp.inline_completion.enable, on, { bufnr = buf })
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
  if not server.enabled then
    return "codefill: off"
  end
  if st.model == "loading" then
    return "codefill: loading" .. (st.percent and string.format(" %d%%", st.percent) or "")
  end
  if st.model == "ready" and server.generating > 0 then
    return "codefill: generating"
  end
  if st.model == "failed" or st.model == "error" then
    return "codefill: error"
  end
  return "codefill: " .. st.model
end

local function fmt_status(result)
  local lines = {}
  local function add(...)
    lines[#lines + 1] = string.format(...)
  end
  add("codefill %s: %s", result.version or "?", M.statusline())
  local m = result.model or {}
  add("model: %s (%s, template %s) %s", tostring(m.model or "?"), tostring(m.architecture or "?"),
    tostring(m.template or "?"), tostring(m.state or "?"))
  if m.error and m.error ~= vim.NIL then
    add("model error: %s", m.error)
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

local subcommands = {
  status = function() M.status() end,
  toggle = function() M.toggle() end,
  enable = function() M.toggle(true) end,
  disable = function() M.toggle(false) end,
  restart = function() M.restart() end,
  log = function() M.show_log() end,
}

local function map_keys(keys)
  local function imap(lhs, fn, desc, fallback)
    if type(lhs) ~= "string" or lhs == "" then
      return
    end
    if fallback then
      -- Accept when a suggestion is shown, else the key does what it did before.
      vim.keymap.set("i", lhs, function()
        if M.is_visible() then
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
  imap(keys.accept_word, "accept_word", "codefill: accept the next word", true)
  imap(keys.accept_line, "accept_line", "codefill: accept the next line", true)
  imap(keys.dismiss, "dismiss", "codefill: dismiss the suggestion", true)
  imap(keys.trigger, "trigger", "codefill: ask for a suggestion", false)
end

local function autocmds()
  group = api.nvim_create_augroup("codefill", { clear = true })
  api.nvim_create_autocmd({ "FileType", "BufReadPost", "BufNewFile" }, {
    group = group,
    callback = function(ev)
      attach(ev.buf)
    end,
  })
  if M.uses_native() then
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
    local fn = subcommands[a.fargs[1] or "status"]
    if not fn then
      vim.notify("codefill: unknown subcommand " .. a.fargs[1] .. " (status, toggle, enable, disable, restart, log)",
        vim.log.levels.ERROR)
      return
    end
    fn()
  end, {
    nargs = "?",
    complete = function()
      return vim.tbl_keys(subcommands)
    end,
    desc = "codefill: status | toggle | enable | disable | restart | log",
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
