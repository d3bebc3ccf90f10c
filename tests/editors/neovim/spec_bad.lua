-- Bad input: server missing, not on PATH, crashing, model that fails to load, a remote engine
-- that does not answer. Neovim must show a clear status, never raise, keep typing working, and
-- restart a crashing server a bounded number of times.
local Child = require("child")

local WS = assert(vim.env.CODEFILL_TEST_WORKSPACE, "CODEFILL_TEST_WORKSPACE is not set")
local CMD = vim.json.decode((assert(vim.env.CODEFILL_TEST_SERVER_CMD, "CODEFILL_TEST_SERVER_CMD is not set")))

local function eq(a, b, what)
  if not vim.deep_equal(a, b) then
    error(string.format("%s: expected %s, got %s", what or "value", vim.inspect(b), vim.inspect(a)), 2)
  end
end

local function note_matching(notes, level, pattern)
  for _, n in ipairs(notes) do
    if n.level == level and n.msg:find(pattern) then
      return n.msg
    end
  end
  error(string.format("no notification of level %d matching %q in %s", level, pattern, vim.inspect(notes)), 2)
end

--- A stand-in for llama-server on 127.0.0.1, in this (parent) Neovim: bound at once (so the port
--- is reserved, and connections are refused while it does not listen), answering every request
--- with one non-streamed llama-server answer after :listen(). Enough for codefill's probe
--- (GET /props) and /infill; not a model. `delay_ms`: answer /infill only after that long (a
--- very slow model).
local function fake_llama_server(delay_ms)
  local tcp = assert(vim.uv.new_tcp())
  assert(tcp:bind("127.0.0.1", 0))
  local self = { port = tcp:getsockname().port, requests = 0 }
  function self.listen()
    assert(tcp:listen(16, function(err)
      assert(not err, err)
      local conn = vim.uv.new_tcp()
      tcp:accept(conn)
      local buf = ""
      conn:read_start(function(rerr, chunk)
        if rerr or not chunk then
          conn:close()
          return
        end
        buf = buf .. chunk
        local head_end = buf:find("\r\n\r\n", 1, true)
        if not head_end then
          return
        end
        local len = tonumber(buf:sub(1, head_end):lower():match("content%-length:%s*(%d+)")) or 0
        if #buf < head_end + 3 + len then
          return
        end
        conn:read_stop()
        self.requests = self.requests + 1
        local path = buf:match("^%u+ (%S+)")
        local body = path == "/props" and '{"default_generation_settings":{"n_ctx":4096}}'
          or '{"content":" = 1","stop":true,"stop_type":"eos"}'
        local function answer()
          if conn:is_closing() then
            return
          end
          conn:write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body
            .. "\r\nConnection: close\r\n\r\n" .. body, function()
            if not conn:is_closing() then
              conn:shutdown(function()
                conn:close()
              end)
            end
          end)
        end
        if path ~= "/props" and delay_ms then
          local timer = vim.uv.new_timer()
          timer:start(delay_ms, 0, function()
            timer:close()
            pcall(answer)
          end)
        else
          answer()
        end
      end)
    end))
  end
  function self.close()
    if not tcp:is_closing() then
      tcp:close()
    end
  end
  return self
end

local ERROR = vim.log.levels.ERROR
local WARN = vim.log.levels.WARN

--- Typing still works and nothing raised: insert text and read it back.
local function typing_works(c)
  c:input("Go")
  c:type("still typing")
  c:input("<Esc>")
  local lines = c:lines()
  eq(vim.trim(lines[#lines]), "still typing", "last line after typing (indented by the filetype)")
  local errmsg = c:api("nvim_get_vvar", "errmsg")
  eq(errmsg, "", "v:errmsg")
end

return function(t)
  local children = {}
  local function child(env)
    local c = Child.new({ cwd = WS, env = env })
    children[#children + 1] = c
    return c
  end
  t.after_all(function()
    for _, c in ipairs(children) do
      c:stop()
    end
  end)

  t.case("a server command that does not exist: one clear error, status says so, typing works", function()
    local c = child()
    c:lua([[
      require("codefill").setup({ server = { cmd = { "/nonexistent/bin/codefill", "serve" } } })
      vim.cmd("edit fib.py")
      vim.cmd("edit! fib.py")
    ]])
    local notes = c:notes()
    note_matching(notes, ERROR, "/nonexistent/bin/codefill.*is not executable")
    local errors = 0
    for _, n in ipairs(notes) do
      errors = errors + (n.level == ERROR and 1 or 0)
    end
    eq(errors, 1, "the error is reported once, not on every buffer event")
    eq(c:lua("return require('codefill').statusline()"), "codefill: error", "statusline")
    local status = c:lua([[
      local out
      require("codefill").status(function(_, text) out = text end)
      return out
    ]])
    assert(status and status:find("is not executable", 1, true), vim.inspect(status))
    local health = c:lua([[
      vim.cmd("checkhealth codefill")
      local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
      vim.cmd("bwipeout")
      return text
    ]])
    assert(health:find("ERROR server command \"/nonexistent/bin/codefill\" is not executable", 1, true), health)
    eq(c:lua("return #vim.lsp.get_clients()"), 0, "no LSP client")
    typing_works(c)
  end)

  t.case("no server command configured and none on PATH: the error says how to fix it", function()
    local c = child({ PATH = "/usr/bin:/bin", VIRTUAL_ENV = "" })
    c:lua([[
      require("codefill").setup({})
      vim.cmd("edit fib.py")
    ]])
    note_matching(c:notes(), ERROR, "`codefill` command was not found .* set server.cmd")
    typing_works(c)
  end)

  t.case("a server that crashes is restarted at most server.max_restarts times", function()
    local c = child()
    c:lua([[
      require("codefill").setup({ server = { cmd = { "sh", "-c", "exit 3" }, max_restarts = 2 } })
      vim.cmd("edit fib.py")
    ]])
    c:wait_lua([[
      for _, n in ipairs(_G.test_notes) do
        if n.msg:find("not restarted again", 1, true) then return true end
      end
    ]], 30000, "the final error")
    local notes = c:notes()
    note_matching(notes, WARN, "exited %(code 3, signal 0%); restarting %(1/2%)")
    note_matching(notes, WARN, "exited %(code 3, signal 0%); restarting %(2/2%)")
    note_matching(notes, ERROR, "not restarted again")
    vim.wait(1500)
    local starts = 0
    for _, n in ipairs(c:notes()) do
      starts = starts + (n.msg:find("restarting", 1, true) and 1 or 0)
    end
    eq(starts, 2, "restarts")
    eq(c:lua("return require('codefill').statusline()"), "codefill: error", "statusline")
    eq(c:lua("return #vim.lsp.get_clients({ name = 'codefill' })"), 0, "no client left running")
    typing_works(c)
  end)

  t.case("a remote engine that does not answer: statusline, status and checkhealth say so; then it recovers", function()
    local engine = fake_llama_server()
    local url = "http://127.0.0.1:" .. engine.port
    local c = child()
    local ok, err = pcall(function()
      c:lua([[
        local cmd, url = ...
        require("codefill").setup({ server = { cmd = cmd },
          settings = { remote = { url = url, retries = 0, connect_timeout_ms = 1000 } } })
        vim.cmd("edit fib.py")
      ]], CMD, url)
      -- The server probes the engine when it starts; the probe is refused, the server warns
      -- (window/showMessage) and the plugin refreshes its status.
      c:wait_lua([[return require("codefill").statusline() == "codefill: remote failing"]], 120000,
        "statusline 'codefill: remote failing'")
      local log = table.concat(c:lua("return require('codefill.server').log_lines()"), "\n")
      assert(log:find("message: codefill: remote engine failing: cannot reach the remote engine at " .. url, 1, true), log)
      local status = c:wait_lua([[
        local out
        require("codefill").status(function(_, text) out = text end)
        vim.wait(5000, function() return out ~= nil end, 20)
        return out
      ]], 10000, "status text")
      assert(status:find("backend: remote engine llama-server at " .. url .. ", health failing", 1, true), status)
      assert(status:find("remote error: cannot reach the remote engine", 1, true), status)
      local health = c:lua([[
        vim.cmd("checkhealth codefill")
        local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
        vim.cmd("bwipeout")
        return text
      ]])
      assert(health:find("WARNING backend: remote engine llama-server at " .. url .. ", health failing", 1, true), health)
      typing_works(c)
      eq(c:lua("return require('codefill').get_suggestion()"), vim.NIL, "no suggestion")
      -- The engine comes up: the next request succeeds, the server says so, the status follows.
      engine.listen()
      c:input("Go")
      c:type("y")
      c:wait_lua([[return require("codefill").statusline() == "codefill: ready (remote)"]], 60000,
        "statusline 'codefill: ready (remote)'")
      c:input("<Esc>")
      log = table.concat(c:lua("return require('codefill.server').log_lines()"), "\n")
      assert(log:find("is answering", 1, true), log)
      assert(engine.requests >= 1, "the fake engine was asked")
    end)
    engine.close()
    assert(ok, err)
  end)

  t.case("a very slow model (an engine answering after 20 s): typing is never held up, status says generating", function()
    local engine = fake_llama_server(20000)
    engine.listen()
    local url = "http://127.0.0.1:" .. engine.port
    local c = child()
    local ok, err = pcall(function()
      c:lua([[
        local cmd, url = ...
        require("codefill").setup({ server = { cmd = cmd },
          settings = { remote = { url = url, read_timeout_ms = 60000 } } })
        vim.cmd("edit fib.py")
      ]], CMD, url)
      c:wait_lua([[return require("codefill").statusline() == "codefill: ready (remote)"]], 120000,
        "statusline 'codefill: ready (remote)'")
      c:input("Go<C-u>")
      local text = "total = fibonacci(7)"
      local t0 = vim.uv.hrtime()
      c:type(text, 60)
      local typing_s = (vim.uv.hrtime() - t0) / 1e9
      -- Each key is handled at once (Child:input waits until the child is not blocking).
      assert(typing_s < #text * 0.06 + 5, string.format("typing %d keys took %.1f s", #text, typing_s))
      eq(c:lua("return vim.api.nvim_get_current_line()"), text, "the typed line, at once")
      c:wait_lua([[return require("codefill").statusline() == "codefill: generating"]], 10000,
        "statusline 'codefill: generating' while the engine is slow")
      eq(c:lua("return require('codefill').get_suggestion()"), vim.NIL, "no suggestion yet")
      c:input("<Esc>")
      c:wait_lua([[return require("codefill").statusline() == "codefill: ready (remote)"]], 10000,
        "statusline back to ready after <Esc> (the request is cancelled)")
      eq(c:api("nvim_get_vvar", "errmsg"), "", "v:errmsg")
    end)
    engine.close()
    assert(ok, err)
  end)

  t.case("a model that fails to load: status shows the error, typing works, no ghost text", function()
    local c = child()
    c:lua([[
      require("codefill").setup({ server = { cmd = ... }, settings = { engine = { model = "/nonexistent/model.gguf" } } })
      vim.cmd("edit fib.py")
    ]], CMD)
    c:wait_lua([[return require("codefill.server").state.model == "failed"]], 120000, "model state failed")
    eq(c:lua("return require('codefill').statusline()"), "codefill: error", "statusline")
    local err = c:lua("return require('codefill.server').state.error")
    assert(type(err) == "string" and err:find("nonexistent/model.gguf", 1, true), vim.inspect(err))
    local status = c:wait_lua([[
      local out
      require("codefill").status(function(_, text) out = text end)
      vim.wait(5000, function() return out ~= nil end, 20)
      return out
    ]], 10000, "status text")
    assert(status:find("model error:", 1, true), status)
    typing_works(c)
    eq(c:lua("return require('codefill').get_suggestion()"), vim.NIL, "no suggestion")
  end)
end
