import json, subprocess, sys, threading
d = {i: str(i) * 20 for i in range(200000)}
lists = [list(range(100)) for _ in range(5000)]
buffers = [bytearray(1 << 20) for _ in range(8)]
text = json.dumps({"k%d" % i: [i, str(i), {"x": i}] for i in range(50000)})
assert len(json.loads(text)) == 50000
def work(n, out):
    m = {}
    for i in range(60000):
        m[(n, i)] = [i] * 3
    out[n] = len(m)
out = {}
threads = [threading.Thread(target=work, args=(n, out)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert sum(out.values()) == 240000
r = subprocess.run([sys.executable, "-c", "print(sum(range(1000)))"],
                   capture_output=True, text=True, check=True)
assert r.stdout.strip() == "499500"
del d, lists, buffers
print("python ok")
