-- codefill's own inline-completion renderer: asks the server (streaming codefill/complete or
-- textDocument/inlineCompletion), draws the suggestion as ghost text with extmarks (virt_text
-- for the rest of the cursor line, virt_lines below), and accepts it in full, by word or by line.
-- With several ranked candidates (the server's completion.candidates setting) one is shown at a
-- time, with an "n/m" count at the end of the line, and next/prev cycle through them.
local server = require("codefill.server")

local M = {}

local api = vim.api
M.ns = api.nvim_create_namespace("codefill.ghost")
-- The "n/m" count of the candidates, beside the ghost text (only with more than one).
M.count_ns = api.nvim_create_namespace("codefill.ghost.count")

local uv = vim.uv or vim.loop
local seq = 0
-- Per buffer: { sugg = {row, col, prefix, text, candidates, index, tick, extmark},
--               req = {client, id, stream, cycle}, timer = uv timer,
--               dismissed_tick = changedtick after a dismiss }
-- sugg.candidates: the ranked texts to insert at (row, col); sugg.text == candidates[index] is
-- the one shown.
local bufs = {}
local streams = {} ---@type table<string, table> streamId -> request record
-- Counters for :Codefill status and the tests.
M.stats = { requests = 0, inline_requests = 0, partials = 0, answers = 0, shown = 0, accepts = 0, cycles = 0 }

local function cfg()
  return server.config
end

local function bstate(buf)
  local s = bufs[buf]
  if not s then
    s = {}
    bufs[buf] = s
  end
  return s
end

local function in_insert()
  local mode = api.nvim_get_mode().mode
  return mode:sub(1, 1) == "i"
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function pum_hidden_now()
  return cfg().ghost.pum == "hide" and vim.fn.pumvisible() == 1
end

--- Remove the ghost text (the suggestion record stays for typing-through unless `forget`).
function M.clear(buf, forget)
  buf = buf or api.nvim_get_current_buf()
  local s = bufs[buf]
  if api.nvim_buf_is_valid(buf) then
    api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
    api.nvim_buf_clear_namespace(buf, M.count_ns, 0, -1)
  end
  if s then
    if s.sugg then
      s.sugg.extmark = nil
    end
    if forget then
      s.sugg = nil
    end
  end
end

local function cancel(buf)
  local s = bufs[buf]
  if s and s.timer then
    s.timer:stop()
  end
  if s and s.req then
    local req = s.req
    s.req = nil
    streams[req.stream] = nil
    if req.client and not req.client:is_stopped() and req.id then
      pcall(req.client.cancel_request, req.client, req.id)
    end
    server.generating = math.max(0, server.generating - 1)
  end
end
M.cancel = cancel

local function display(text)
  -- Tabs in virtual text would show as ^I: expand them as the buffer would.
  local ts = vim.bo.tabstop > 0 and vim.bo.tabstop or 8
  return (text:gsub("\t", string.rep(" ", ts)))
end

--- The candidate list of an answer: `text` first, then the other non-empty strings of `list`
--- in their order, without repeats. Empty when `text` is empty.
---@param text string|nil
---@param list any the reply's candidates (may be nil, vim.NIL or malformed)
---@return string[]
local function candidate_list(text, list)
  if type(text) ~= "string" or text == "" then
    return {}
  end
  local out, seen = { text }, { [text] = true }
  if type(list) == "table" then
    for _, c in ipairs(list) do
      if type(c) == "string" and c ~= "" and not seen[c] then
        seen[c] = true
        out[#out + 1] = c
      end
    end
  end
  return out
end
M._candidate_list = candidate_list

--- After `typed` was inserted at the suggestion's position (typed by the user or accepted in
--- part): the candidates that start with it, with the typed part removed, and the index of the
--- one to show (the one shown before when it still matches, else the best-ranked that does).
---@param candidates string[]
---@param index integer the shown candidate
---@param typed string
---@return string[]|nil candidates nil when none is left
---@return integer index
local function advance(candidates, index, typed)
  local out, at = {}, 1
  for i, c in ipairs(candidates) do
    if #typed < #c and c:sub(1, #typed) == typed then
      out[#out + 1] = c:sub(#typed + 1)
      if i == index then
        at = #out
      end
    end
  end
  if #out == 0 then
    return nil, 1
  end
  return out, at
end
M._advance = advance

--- The index `step` places away from `index` in a list of `n`, wrapping around.
local function step_index(index, step, n)
  return (index - 1 + step) % n + 1
end
M._step_index = step_index

--- Draw `text` as ghost text at (row, col) of buf and remember it as the current suggestion.
--- `candidates` (default { text }) are the ranked alternatives, `index` (default 1) the one
--- that `text` is.
function M.show(buf, row, col, text, candidates, index)
  local s = bstate(buf)
  local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
  candidates = candidates or { text }
  index = index or 1
  s.sugg = {
    row = row,
    col = col,
    prefix = line:sub(1, col),
    text = text,
    candidates = candidates,
    index = index,
    tick = api.nvim_buf_get_changedtick(buf),
  }
  api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  api.nvim_buf_clear_namespace(buf, M.count_ns, 0, -1)
  if text == "" or pum_hidden_now() then
    return
  end
  local lines = vim.split(text, "\n", { plain = true })
  local hl = cfg().ghost.hl_group
  local opts = { hl_mode = "combine", priority = 65534 }
  if lines[1] ~= "" then
    opts.virt_text = { { display(lines[1]), hl } }
    opts.virt_text_pos = vim.fn.has("nvim-0.10") == 1 and "inline" or "overlay"
  end
  if #lines > 1 then
    local vl = {}
    for i = 2, #lines do
      vl[#vl + 1] = { { display(lines[i]), hl } }
    end
    opts.virt_lines = vl
  end
  s.sugg.extmark = api.nvim_buf_set_extmark(buf, M.ns, row, col, opts)
  if #candidates > 1 then
    api.nvim_buf_set_extmark(buf, M.count_ns, row, 0, {
      virt_text = { { string.format("(%d/%d)", index, #candidates), hl } },
      virt_text_pos = "eol",
      hl_mode = "combine",
      priority = 65534,
    })
  end
end

--- The suggestion shown at the cursor of the current window, or nil.
function M.current(buf)
  buf = buf or api.nvim_get_current_buf()
  local s = bufs[buf]
  if not s or not s.sugg or not s.sugg.extmark or s.sugg.text == "" then
    return nil
  end
  local row, col = cursor()
  if s.sugg.row ~= row or s.sugg.col ~= col or s.sugg.tick ~= api.nvim_buf_get_changedtick(buf) then
    return nil
  end
  return s.sugg
end

local function request_done(buf, req)
  local s = bufs[buf]
  if s and s.req == req then
    s.req = nil
    server.generating = math.max(0, server.generating - 1)
  end
  streams[req.stream] = nil
end

--- Is the answer to `req` still about the buffer and cursor the user sees?
local function still_valid(buf, req)
  if not api.nvim_buf_is_valid(buf) or api.nvim_get_current_buf() ~= buf or not in_insert() then
    return false
  end
  local row, col = cursor()
  return req.tick == api.nvim_buf_get_changedtick(buf) and req.row == row and req.col == col
end

--- Show an answer: `text` and the ranked `list` of candidates (codefill/complete's candidates
--- or the items of textDocument/inlineCompletion).
local function on_answer(buf, req, text, list)
  if not still_valid(buf, req) then
    return
  end
  M.stats.answers = M.stats.answers + 1
  local candidates = candidate_list(text, list)
  if #candidates == 0 then
    M.clear(buf, true)
    return
  end
  -- The candidate shown now at this place (a streamed text, a typed-through one, one the user
  -- cycled to) stays shown when the answer has it; then a next/prev pressed while it was
  -- generating.
  local index = 1
  local shown = M.current(buf)
  if shown and shown.row == req.row and shown.col == req.col then
    for i, c in ipairs(candidates) do
      if c == shown.text then
        index = i
        break
      end
    end
  end
  if req.cycle and req.cycle ~= 0 and #candidates > 1 then
    index = step_index(index, req.cycle, #candidates)
    M.stats.cycles = M.stats.cycles + 1
  end
  M.stats.shown = M.stats.shown + 1
  M.show(buf, req.row, req.col, candidates[index], candidates, index)
end

--- codefill/partial notification handler: the growing text of a streamed suggestion.
function M.on_partial(_, params, _)
  local req = params and streams[params.streamId]
  if not req then
    return
  end
  local text = params.text
  M.stats.partials = M.stats.partials + 1
  if type(text) == "string" and text ~= "" and still_valid(req.buf, req) then
    -- Several candidates shown here already (typed through): they stay until the answer.
    local shown = M.current(req.buf)
    if shown and #shown.candidates > 1 and shown.row == req.row and shown.col == req.col then
      return
    end
    M.show(req.buf, req.row, req.col, text)
  end
end

--- Ask the server for a suggestion at the cursor now.
---@param invoked boolean? true when the user asked explicitly
---@param retry boolean? a second attempt after a spurious empty answer (not retried again)
function M.request(invoked, retry)
  local buf = api.nvim_get_current_buf()
  if not server.enabled or not in_insert() or pum_hidden_now() then
    return
  end
  local client = server.client(buf)
  if not client then
    return
  end
  local s = bstate(buf)
  if not invoked and not retry and s.dismissed_tick == api.nvim_buf_get_changedtick(buf) then
    return
  end
  cancel(buf)
  local row, col = cursor()
  seq = seq + 1
  local req = {
    buf = buf,
    client = client,
    row = row,
    col = col,
    tick = api.nvim_buf_get_changedtick(buf),
    stream = string.format("nvim-%d-%d", vim.fn.getpid(), seq),
    retry = retry,
  }
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local ok, id
  if cfg().streaming then
    M.stats.requests = M.stats.requests + 1
    params.streamId = req.stream
    streams[req.stream] = req
    ok, id = client:request("codefill/complete", params, function(err, result)
      request_done(buf, req)
      if err then
        if err.code ~= -32800 then -- RequestCancelled
          server.log("codefill/complete failed: " .. tostring(err.message))
        end
        return
      end
      -- Workaround for the server (0.1.0): a request that adopted an in-flight generation
      -- which then turned out not to match what was typed answers "" with the reason "the
      -- document changed" although it did not. Ask once more: the next answer starts afresh.
      if result and result.text == "" and result.reason == "the document changed"
        and not req.retry and still_valid(buf, req) then
        server.log("empty answer from a diverged in-flight generation; asking again")
        M.request(invoked, true)
        return
      end
      server.after_answer(client.id, result and result.reason)
      on_answer(buf, req, result and result.text, result and result.candidates)
    end, buf)
  else
    M.stats.inline_requests = M.stats.inline_requests + 1
    params.context = { triggerKind = invoked and 1 or 2 }
    ok, id = client:request("textDocument/inlineCompletion", params, function(err, result)
      request_done(buf, req)
      if err then
        if err.code ~= -32800 then
          server.log("textDocument/inlineCompletion failed: " .. tostring(err.message))
        end
        return
      end
      local items = result and (result.items or result) or {}
      if type(items) ~= "table" then
        items = {}
      end
      -- Every item is a candidate, in the server's order.
      local texts = {}
      for _, item in ipairs(items) do
        local t = type(item) == "table" and item.insertText or nil
        if type(t) == "table" then
          t = t.value
        end
        if type(t) == "string" then
          texts[#texts + 1] = t
        end
      end
      local text = texts[1]
      if not text or text == "" then
        server.after_answer(client.id, nil)
      end
      on_answer(buf, req, text, texts)
    end, buf)
  end
  if ok then
    req.id = id
    s.req = req
    server.generating = server.generating + 1
  else
    streams[req.stream] = nil
  end
end

--- Ask after the configured debounce (coalesces bursts of keystrokes).
function M.schedule_request()
  local buf = api.nvim_get_current_buf()
  local s = bstate(buf)
  if not s.timer then
    s.timer = uv.new_timer()
  end
  s.timer:stop()
  s.timer:start(cfg().trigger.debounce_ms, 0, vim.schedule_wrap(function()
    if api.nvim_buf_is_valid(buf) and api.nvim_get_current_buf() == buf then
      M.request(false)
    end
  end))
end

--- TextChangedI: keep the suggestion when the user typed its first characters, else drop it.
function M.on_text_changed(buf)
  local s = bstate(buf)
  local sugg = s.sugg
  local tick = api.nvim_buf_get_changedtick(buf)
  if sugg and sugg.tick ~= tick then
    local row, col = cursor()
    local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
    local typed = line:sub(sugg.col + 1, col)
    local candidates, index
    if row == sugg.row and col > sugg.col and line:sub(1, sugg.col) == sugg.prefix then
      -- Typing-through, per candidate: those that go on with what was typed stay.
      candidates, index = advance(sugg.candidates, sugg.index, typed)
    end
    if candidates then
      M.show(buf, row, col, candidates[index], candidates, index)
    else
      M.clear(buf, true)
    end
  end
  cancel(buf)
  if cfg().trigger.auto then
    M.schedule_request()
  end
end

--- CursorMovedI: a move that is not a text change dismisses the ghost text.
function M.on_cursor_moved(buf)
  local s = bufs[buf]
  if not s or not s.sugg then
    return
  end
  if s.sugg.tick ~= api.nvim_buf_get_changedtick(buf) then
    return -- a text change: TextChangedI (which follows) decides
  end
  local row, col = cursor()
  if row ~= s.sugg.row or col ~= s.sugg.col then
    cancel(buf)
    M.clear(buf, true)
  end
end

local function next_word(text)
  -- Leading whitespace (newlines included), then a run of word characters or of other
  -- non-space characters.
  local ws = text:match("^%s*")
  local rest = text:sub(#ws + 1)
  local word = rest:match("^[%w_]+") or rest:match("^[^%w_%s]+") or ""
  return ws .. word
end

local function next_line(text)
  if text:sub(1, 1) == "\n" then
    local nl = text:find("\n", 2, true)
    return nl and text:sub(1, nl - 1) or text
  end
  local nl = text:find("\n", 1, true)
  return nl and text:sub(1, nl - 1) or text
end

M._next_word, M._next_line = next_word, next_line

--- Accept the suggestion at the cursor: "all", "word" or "line". Returns true if text was inserted.
function M.accept(what)
  local buf = api.nvim_get_current_buf()
  local sugg = M.current(buf)
  if not sugg then
    return false
  end
  local piece = sugg.text
  if what == "word" then
    piece = next_word(sugg.text)
  elseif what == "line" then
    piece = next_line(sugg.text)
  end
  if piece == "" then
    piece = sugg.text
  end
  -- What stays shown after a partial accept: the rest of this candidate, and of the others
  -- that start with the accepted piece too.
  local candidates, index = advance(sugg.candidates, sugg.index, piece)
  cancel(buf)
  M.clear(buf, true)
  local lines = vim.split(piece, "\n", { plain = true })
  api.nvim_buf_set_text(buf, sugg.row, sugg.col, sugg.row, sugg.col, lines)
  local row = sugg.row + #lines - 1
  local col = #lines == 1 and (sugg.col + #piece) or #lines[#lines]
  api.nvim_win_set_cursor(0, { row + 1, col })
  if candidates then
    M.show(buf, row, col, candidates[index], candidates, index)
  end
  local client = server.client(buf)
  if client then
    local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
    client:notify("codefill/didAccept", { textDocument = params.textDocument, position = params.position })
  end
  M.stats.accepts = M.stats.accepts + 1
  server.log(string.format("accepted %s (%d chars)", what or "all", #piece))
  return true
end

--- Show the candidate `step` places after the shown one (negative: before), wrapping around.
--- Nothing shown: ask for a suggestion. Only the streamed text shown while the answer is being
--- generated: cycle once it arrives. Returns true when another candidate is shown (or will be).
function M.cycle(step)
  local buf = api.nvim_get_current_buf()
  local s = bstate(buf)
  local sugg = M.current(buf)
  local row, col = cursor()
  local req = s.req
  local pending = req and req.row == row and req.col == col
    and req.tick == api.nvim_buf_get_changedtick(buf)
  if not sugg then
    if not pending then
      M.request(true)
    end
    return false
  end
  if #sugg.candidates < 2 then
    if pending then
      req.cycle = (req.cycle or 0) + step
      return true
    end
    -- The server serves the first suggestion before it has ranked the alternatives; asked
    -- again at the same place it waits for them. Step once they arrive.
    M.request(true)
    local again = bstate(buf).req
    if again then
      again.cycle = step
      return true
    end
    return false
  end
  local index = step_index(sugg.index, step, #sugg.candidates)
  M.show(buf, sugg.row, sugg.col, sugg.candidates[index], sugg.candidates, index)
  M.stats.cycles = M.stats.cycles + 1
  return true
end

--- Hide the suggestion until the text changes again.
function M.dismiss()
  local buf = api.nvim_get_current_buf()
  cancel(buf)
  M.clear(buf, true)
  bstate(buf).dismissed_tick = api.nvim_buf_get_changedtick(buf)
end

function M.detach(buf)
  cancel(buf)
  M.clear(buf, true)
  local s = bufs[buf]
  if s and s.timer then
    s.timer:stop()
    s.timer:close()
  end
  bufs[buf] = nil
end

function M.clear_all()
  for buf in pairs(bufs) do
    cancel(buf)
    M.clear(buf, true)
  end
end

return M
