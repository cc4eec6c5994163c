-- The hash cache (lua/lorasc/hash_cache.lua) on its own: an entry is found only while every
-- part of the file's stat (size, mtime, ctime, inode) is the recorded one; a file changed in
-- the last RECENT_S seconds, one read at another size than its stat's, a relative path or a
-- path with a line break is not recorded; two processes' saves to one file keep both
-- processes' entries (each save is the union of the file and its own); a line that does not
-- parse is skipped; a cache that cannot be written says so by its result, not an error.
-- Run by `lorasc lua`.
local hash_cache = require "lorasc.hash_cache"
local sys = require "lorasc.core.sys"

local checks = require("checks").new("test_hash_cache")
local check = checks.check

local dir = os.tmpname()
os.remove(dir)
sys.mkdir(dir)
local file = dir .. "/cache/file_hashes.tsv"
local A = string.rep("a", 64)
local B = string.rep("b", 64)
local old = (os.time() - 3600) * 1000000000
local st = { size = 10, mtime_ns = old, ctime_ns = old + 5, ino = 77 }

-- what is recorded, and what is refused
local c = hash_cache.new(file)
check(c:record("/data/x.jpg", st, A, 10), "an old file is recorded")
check(c:lookup("/data/x.jpg", st) == A, "the entry is found at once")
local now = os.time() * 1000000000
check(not c:record("/data/new.jpg", { size = 1, mtime_ns = now, ctime_ns = now, ino = 1 }, A, 1),
  "a file changed just now is recorded")
check(not c:record("/data/touched.jpg", { size = 1, mtime_ns = old, ctime_ns = now, ino = 2 }, A, 1),
  "a file whose inode changed just now (a touch) is recorded")
check(not c:record("/data/grew.jpg", st, A, 11), "a file read at another size than its stat's is recorded")
check(not c:record("data/relative.jpg", st, A, 10), "a relative path is recorded")
check(not c:record("/data/two\nlines.jpg", st, A, 10), "a path with a line break is recorded")
check(c:save(), "save")
check(not c:save(), "a second save with nothing new writes")

-- a later process: every part of the stat must match
local d = hash_cache.new(file)
check(d:lookup("/data/x.jpg", st) == A, "the entry is read back")
for _, k in ipairs { "size", "mtime_ns", "ctime_ns", "ino" } do
  local other = { size = st.size, mtime_ns = st.mtime_ns, ctime_ns = st.ctime_ns, ino = st.ino }
  other[k] = other[k] + 1
  check(d:lookup("/data/x.jpg", other) == nil, "an entry is trusted with another " .. k)
end
check(d:lookup("/data/y.jpg", st) == nil, "a path never recorded is found")

-- two processes that loaded the same file each record an entry, then save: both are kept
local p = hash_cache.new(file)
local q = hash_cache.new(file)
p:load(); q:load()
check(p:record("/data/p.jpg", st, A, 10) and q:record("/data/q.jpg", st, B, 10), "records")
check(p:save() and q:save(), "two saves")
local r = hash_cache.new(file)
check(r:lookup("/data/p.jpg", st) == A and r:lookup("/data/q.jpg", st) == B and r:lookup("/data/x.jpg", st) == A,
  "concurrent saves lost an entry")

-- lines that do not parse are skipped (a file cut short, an edit), the others still found
local f = assert(io.open(file, "a"))
f:write("garbage\n", B, " 10 1 2\n", string.sub(B, 1, 60), " 10 ", old, " ", old + 5, " 77 /data/cut.jpg\n")
f:write(B, " 10 ", old, " ", old + 5, " 77 /data/z.jpg\n", A, " 10 ", old)
f:close()
local s = hash_cache.new(file)
check(s:lookup("/data/z.jpg", st) == B, "a good line after bad ones is lost")
check(s:lookup("/data/cut.jpg", st) == nil, "a line with a short hash is believed")
check(s:lookup("/data/x.jpg", st) == A, "an earlier line is lost")

-- a cache where nothing can be written: save says false, nothing is raised
local ro = hash_cache.new("/proc/lorasc-no-such-dir/file_hashes.tsv")
check(ro:lookup("/data/x.jpg", st) == nil, "a missing cache file has entries")
check(ro:record("/data/x.jpg", st, A, 10), "record (in memory)")
check(ro:save() == false, "an unwritable cache was saved")

os.execute("rm -rf '" .. dir .. "'")
return checks.finish()
