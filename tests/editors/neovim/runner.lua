-- Test runner for codefill.nvim, run by a headless Neovim:
--   nvim --headless -u NONE -i NONE -n -l runner.lua RESULTS.json SPEC.lua [NAME_FILTER]
-- NAME_FILTER: substrings separated by | (a case runs when its name contains one of them).
-- A spec file returns function(t) that registers cases with t.case(name, fn). Each case runs
-- in this (parent) Neovim and usually drives a child Neovim (child.lua) over RPC, so that keys
-- go through the child's real input loop and its autocommands fire as for a user.
-- Results: a JSON list of {name, ok, error, seconds} written to RESULTS.json; exit code 0 when
-- every case passed.
local out_path, spec_path, filter = arg[1], arg[2], arg[3]
assert(out_path and spec_path, "usage: runner.lua RESULTS.json SPEC.lua [FILTER]")

local here = vim.fs.dirname(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p"))
package.path = here .. "/?.lua;" .. package.path

local t = { cases = {}, after = {} }
function t.case(name, fn)
  t.cases[#t.cases + 1] = { name = name, fn = fn }
end
function t.after_all(fn)
  t.after[#t.after + 1] = fn
end

local spec = dofile(spec_path)
spec(t)

local results = {}
local failed = 0
for _, case in ipairs(t.cases) do
  local selected = not filter
  for _, part in ipairs(filter and vim.split(filter, "|", { plain = true }) or {}) do
    selected = selected or case.name:find(part, 1, true) ~= nil
  end
  if selected then
    local start = vim.uv.hrtime()
    local ok, err = xpcall(case.fn, debug.traceback)
    local secs = (vim.uv.hrtime() - start) / 1e9
    results[#results + 1] = { name = case.name, ok = ok, error = ok and vim.NIL or tostring(err), seconds = secs }
    io.stdout:write(string.format("%s %s (%.1f s)\n", ok and "PASS" or "FAIL", case.name, secs))
    if not ok then
      failed = failed + 1
      io.stdout:write(tostring(err) .. "\n")
    end
    io.stdout:flush()
  end
end
for _, fn in ipairs(t.after) do
  pcall(fn)
end

local f = assert(io.open(out_path, "w"))
f:write(vim.json.encode(results))
f:close()
io.stdout:write(string.format("cases ok %d, cases failing %d\n", #results - failed, failed))
os.exit(failed == 0 and 0 or 1)
