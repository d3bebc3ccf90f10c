-- A child Neovim (`nvim --embed --headless`) driven over msgpack-RPC from the test runner.
-- Keys sent with child:input() go through the child's input loop like typed keys, so insert
-- mode, mappings and autocommands (TextChangedI, CursorMovedI, InsertLeave) behave as for a user.
local Child = {}
Child.__index = Child

local here = vim.fs.dirname(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p"))

---@param opts { cwd: string?, env: table? }
function Child.new(opts)
  opts = opts or {}
  local env = vim.tbl_extend("force", { CODEFILL_TEST_PLUGIN = vim.env.CODEFILL_TEST_PLUGIN }, opts.env or {})
  local cmd = { vim.v.progpath, "--embed", "--headless", "-n", "-i", "NONE", "-u", here .. "/init.lua" }
  local stderr = {}
  local chan = vim.fn.jobstart(cmd, {
    rpc = true,
    cwd = opts.cwd,
    env = env,
    on_stderr = function(_, data)
      vim.list_extend(stderr, data)
    end,
  })
  assert(chan > 0, "could not start the child Neovim: " .. vim.inspect(cmd))
  local self = setmetatable({ chan = chan, stderr = stderr }, Child)
  -- The first request returns once the child has read its init file.
  self:api("nvim_eval", "1")
  return self
end

function Child:api(fn, ...)
  return vim.rpcrequest(self.chan, fn, ...)
end

--- Run Lua in the child; `...` are passed as the chunk's varargs.
function Child:lua(code, ...)
  return vim.rpcrequest(self.chan, "nvim_exec_lua", code, { ... })
end

--- Type keys (notation as in mappings: "<Tab>", "<Esc>", "<M-Right>").
function Child:input(keys)
  local n = vim.rpcrequest(self.chan, "nvim_input", keys)
  -- Let the child consume them before the next RPC call looks at its state.
  self:wait_lua("return vim.api.nvim_get_mode().blocking == false", 5000)
  return n
end

--- Type text one key at a time with a pause, like a person typing.
function Child:type(text, pause_ms)
  for ch in text:gmatch(".") do
    self:input(ch == "<" and "<LT>" or ch)
    vim.wait(pause_ms or 60)
  end
end

--- Wait until a Lua chunk in the child returns a truthy value; returns that value.
function Child:wait_lua(code, timeout_ms, what)
  local value
  local ok = vim.wait(timeout_ms or 10000, function()
    value = vim.rpcrequest(self.chan, "nvim_exec_lua", code, {})
    return value ~= nil and value ~= false and value ~= vim.NIL
  end, 50)
  if not ok then
    local state = ""
    if self.diagnose then
      local okd, d = pcall(vim.rpcrequest, self.chan, "nvim_exec_lua", self.diagnose, {})
      state = "\nchild state: " .. (okd and tostring(d) or ("unavailable: " .. tostring(d)))
    end
    error(string.format("timed out after %d ms waiting for %s%s", timeout_ms or 10000, what or code, state), 2)
  end
  return value
end

function Child:lines(buf)
  return self:api("nvim_buf_get_lines", buf or 0, 0, -1, false)
end

function Child:notes()
  return self:lua("return _G.test_notes")
end

function Child:stop()
  pcall(vim.rpcrequest, self.chan, "nvim_exec_lua", [[
    for _, c in ipairs(vim.lsp.get_clients()) do c:stop() end
    vim.wait(5000, function() return #vim.lsp.get_clients() == 0 end, 20)
  ]], {})
  pcall(vim.rpcnotify, self.chan, "nvim_command", "qall!")
  local code = vim.fn.jobwait({ self.chan }, 5000)[1]
  if code == -1 then
    vim.fn.jobstop(self.chan)
  end
end

return Child
