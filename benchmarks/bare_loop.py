"""A bare onnxruntime timing loop, the reference the agent is compared with.

Run in a fresh process: `python bare_loop.py MODEL.onnx THREADS '{"min_iterations": ..., ...}'`.
Same session options, same input (seeded random, as the agent uses for a bundle without eval
data), same warm-up and stopping rule as the agent's loop; nothing else. Prints one JSON line.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def session(model, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def random_feed(sess):
    rng = np.random.default_rng(0)
    feed = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        feed[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def timed(sess, feed, loop):
    """Warm up (count and time), then time each run until the minimum count and duration."""
    run, clock = sess.run, time.perf_counter_ns
    run(None, feed)  # the first inference, outside both loops as in the agent
    start, count = clock(), 0
    while count < loop["warmup_iterations"] or clock() - start < loop["warmup_seconds"] * 1e9:
        run(None, feed)
        count += 1
    samples, start = [], clock()
    while True:
        t0 = clock()
        run(None, feed)
        t1 = clock()
        samples.append(t1 - t0)
        done = len(samples) >= loop["min_iterations"] and t1 - start >= loop["min_seconds"] * 1e9
        if done or len(samples) >= loop["max_iterations"] or t1 - start >= loop["max_seconds"] * 1e9:
            return np.asarray(samples) / 1e6


def main(model, threads, loop_json):
    sess = session(model, int(threads))
    samples = timed(sess, random_feed(sess), json.loads(loop_json))
    print(json.dumps({"p50_ms": float(np.percentile(samples, 50)), "mean_ms": float(samples.mean()),
                      "n": int(samples.size)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
