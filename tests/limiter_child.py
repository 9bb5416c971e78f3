"""A process that takes N slots from a shared RateLimiter at a given start time and prints their times.

Used by tests/test_gemini_flow.py and bench/gemini_throughput.py: python limiter_child.py ROOT STATE RPM N START
"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
from varflow.ratelimit import RateLimiter
lim = RateLimiter(sys.argv[2], rpm=float(sys.argv[3]))
go = float(sys.argv[5])
while time.time() < go:
    time.sleep(0.001)
out = []
for _ in range(int(sys.argv[4])):
    lim.acquire()
    out.append(time.time())
print(json.dumps(out))
