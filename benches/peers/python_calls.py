#!/usr/bin/env python3
"""The cost of the framering Python calls alone, in one process on one core
(no cache lines moving between cores): a Python Producer publishes one
720x1080x3 frame, a Consumer takes it, views it with numpy and hands it back;
p50 of take, array(), del + release() and their total over 20,000 frames.
Compare with benches/peers/python_consumer.py's `python-queued` case (two
processes). Needs `pip install ./python numpy`.

    .venv/bin/python benches/peers/python_calls.py
"""
import framering, numpy as np, time, os
ring=f"micro-{os.getpid()}"
p=framering.Producer(ring, shape=(720,1080,3), slots=8, groups=["default"])
c=framering.Consumer(ring, timeout=5)
clock=time.perf_counter_ns
tk=[];ar=[];rl=[];tot=[]
for i in range(20000):
    with p.loan() as s: pass
    t0=clock(); f=c.take(1.0); t1=clock(); a=f.array(); t2=clock(); del a; f.release(); t3=clock()
    tk.append(t1-t0); ar.append(t2-t1); rl.append(t3-t2); tot.append(t3-t0)
for n,v in [("take",tk),("array",ar),("del+release",rl),("total",tot)]:
    print(n, np.percentile(v[100:],50)/1e3, "us p50")
t0=clock()
for i in range(20000): pass
t1=clock(); print("empty loop per iter", (t1-t0)/20000/1e3)
# clock overhead
v=[]
for i in range(10000):
    a0=clock(); a1=clock(); v.append(a1-a0)
print("clock pair", np.percentile(v,50)/1e3)
p.close(timeout=1)
