"""Peak resident memory of one operation beyond what was loaded before it, measured in a fresh process.

ru_maxrss cannot be used: loading the model and hashing its weights set a higher mark before the operation starts.
Instead the resident set size is sampled every 2 ms while the operation runs; the result is peak minus the size
just before it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

TEMPLATE = """
import os, threading, time, torch
from clgraft.model.headed import DEFAULT_MODEL, HeadedModel, load_backbone
torch.manual_seed(0)
body = load_backbone(DEFAULT_MODEL).model
model = HeadedModel(body, {{"t": 2}}, 0)
param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
ids = torch.randint(1000, 20000, (32, 64)).tolist()
with torch.no_grad():  # one forward first, so that the baseline holds the framework's own buffers
    model(torch.tensor(ids[:8]), torch.ones(8, 64, dtype=torch.long), "t")
{setup}
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
peak, done = [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
before = rss()
sampler = threading.Thread(target=sample)
sampler.start()
{op}
done.set()
sampler.join()
print(param_bytes, max(peak[0], rss()) - before)
"""


def extra_peak(setup: str, op: str) -> tuple[int, int]:
    """(parameter bytes of the default model with a head, peak bytes beyond the state before `op`). `setup` runs
    before the baseline is taken (it may use `body`, `model` and `ids`); `op` is the measured code."""
    script = TEMPLATE.format(setup=textwrap.dedent(setup), op=textwrap.dedent(op))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    param_bytes, extra = map(int, out.stdout.split()[-2:])
    return param_bytes, extra
