"""Streaming inference and generation (issue 5): the stream state carried chunk by chunk gives the full
parallel forward's numbers; bad input is refused; compilations stay bounded; a next-event model trained on
a periodic stream generates that period back; `run_stream` plays a recording."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eventlm.models.eventssm import modeling_flax_eventssm as M
from eventlm.models.eventssm import streaming_eventssm as S
from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig

# 20 channels + pad/bos/eos; 2 stages of 2 blocks with stride 3 (9 events per last-stage position)
TINY = dict(vocab_size=23, pad_token_id=20, bos_token_id=21, eos_token_id=22, hidden_size=8, state_size=8,
            num_ssm_blocks=2, num_stages=2, num_layers_per_stage=2, pooling_stride=3, dropout=0.0, num_labels=5,
            num_mixture_components=3)
# every pooling mode, keep, discretization, norm, conj_sym, readout, gap convention and stride 1 at least once
CASES = {
    "cls-avg-async-layer-mean-widen": (
        "cls", dict(pooling_mode="avg", hidden_expansion_factor=2, state_expansion_factor=2)),
    "cls-last-first-zoh-conj-batch-lastreadout-after": (
        "cls", dict(pooling_mode="last", pooling_keep="first", discretization="zoh", conj_sym=True, norm="batch",
                    classifier_pooling="last", gap_convention="after")),
    "cls-timepool-dirac-reference-readout": (
        "cls", dict(pooling_mode="timepool", discretization="dirac", classifier_pooling="timepool",
                    readout_convention="reference")),
    "cls-timepool-masked-readout-stride1": ("cls", dict(pooling_mode="timepool", classifier_pooling="timepool",
                                                        pooling_stride=1, num_stages=1)),
    "next-event-stride1-zoh-batch-conj": ("ne", dict(pooling_stride=1, num_stages=1, discretization="zoh",
                                                     norm="batch", conj_sym=True)),
    "next-event-timepool-first-async": ("ne", dict(pooling_mode="timepool", pooling_keep="first")),
}
LENGTH, BATCH = 61, 2


def make_model(head, seed=1, **overrides):
    cfg = EventSSMConfig(**{**TINY, **overrides})
    cls = M.FlaxEventSSMForSequenceClassification if head == "cls" else M.FlaxEventSSMForNextEventPrediction
    model = cls(cfg, seed=seed)
    if cfg.norm == "batch":  # running statistics that are not the identity
        rng = np.random.default_rng(seed)
        model.batch_stats = jax.tree_util.tree_map_with_path(
            lambda path, a: jnp.asarray(rng.normal(0, 0.5, a.shape) if path[-1].key == "mean"
                                        else rng.uniform(0.5, 2.0, a.shape), jnp.float32), model.batch_stats)
    return model


def random_stream(seed, length=LENGTH, batch=BATCH, vocab=20):
    """ids and int64 µs timestamps from a large offset, with bursts of equal times and long gaps."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch, length))
    gaps = rng.choice([0, 0, 1, 37, 800, 2500, 40_000], size=(batch, length))
    return ids, 3_600_000_000_000 + np.cumsum(gaps, axis=1)


def chunked(model, ids, ts, plan, **kwargs):
    """Stream per-row counts `plan` (list of (B,) arrays) with attention masks; yields (output, prefix ends, mask)."""
    state = S.init_stream(model, ids.shape[0])
    pos = np.zeros(ids.shape[0], int)
    for counts in plan:
        width = int(max(counts))
        c_ids = np.zeros((ids.shape[0], width), np.int64)
        c_ts = np.zeros((ids.shape[0], width), np.int64)
        mask = np.arange(width)[None, :] < counts[:, None]
        for b, c in enumerate(counts):
            c_ids[b, :c], c_ts[b, :c] = ids[b, pos[b]:pos[b] + c], ts[b, pos[b]:pos[b] + c]
        out, state = S.stream(model, c_ids, c_ts, state, attention_mask=mask.astype(np.int32), **kwargs)
        pos = pos + counts
        yield out, pos.copy(), mask, state


def plans(seed, length=LENGTH, batch=BATCH):
    """Chunkings of each row: single events, random odd sizes (rows differ), one big chunk."""
    rng = np.random.default_rng(seed)
    singles_then_odd, left = [], np.full(batch, length)
    while left.any():
        sizes = 1 if len(singles_then_odd) < 5 else rng.choice([1, 2, 3, 5, 7, 11, 13], size=batch)
        singles_then_odd.append(np.minimum(sizes, left))
        left = left - singles_then_odd[-1]
    return {"singles-then-odd": singles_then_odd, "one-chunk": [np.full(batch, length)]}


def rel_close(got, ref, tol=1e-5):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    err = float(np.max(np.abs(got - ref))) / scale if got.size else 0.0
    assert got.shape == ref.shape and err <= tol, f"relative error {err:.2e} > {tol} (shapes {got.shape}, {ref.shape})"


_MODELS = {}


def case_model(name):
    """One model per case for the whole module (models of one config share their compiled steps)."""
    if name not in _MODELS:
        head, overrides = CASES[name]
        _MODELS[name] = make_model(head, **overrides)
    return _MODELS[name]


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return request.param, CASES[request.param][0], case_model(request.param)


def implementations(model):
    """The step implementations that run this model: the XLA step, and the CPU kernel where it covers it."""
    return ["xla"] + (["cpu-kernel"] if S.cpu_kernel.unsupported_reason(model) is None else [])


@pytest.mark.parametrize("implementation", ["xla", "cpu-kernel"])
def test_streamed_chunks_equal_the_full_forward(case, implementation):
    name, head, model = case
    if implementation not in implementations(model):
        with pytest.raises(ValueError, match="CPU streaming kernel cannot run this model: zoh"):
            S.stream(model, *random_stream(seed=0, length=3), S.init_stream(model, BATCH), implementation=implementation)
        return
    ids, ts = random_stream(seed=len(name))
    full = None if head == "cls" else model(ids, ts)
    for plan_name, plan in plans(seed=len(name)).items():
        pieces = []
        for out, ends, mask, _ in chunked(model, ids, ts, plan, buckets=(8,), implementation=implementation):
            if head == "cls":  # the prediction after any chunk = the full forward on that prefix
                prefix = (np.arange(LENGTH)[None, :] < ends[:, None]).astype(np.int32)
                rel_close(out.logits, model(ids, ts, attention_mask=prefix).logits)
            else:
                pieces.append((out, mask))
        if head == "ne":
            for field in ("logits", "gap_mixture_logits", "gap_log_means", "gap_log_scales"):
                rows = [np.concatenate([np.asarray(getattr(o, field))[b][m[b]] for o, m in pieces])
                        for b in range(BATCH)]
                rel_close(np.stack(rows), getattr(full, field))
                for o, m in pieces:  # positions past a row's events read zeros
                    assert not np.asarray(getattr(o, field))[~m].any()


def test_state_is_immutable_and_reusable(case):
    name, head, model = case
    ids, ts = random_stream(seed=3, length=20)
    state = S.init_stream(model, BATCH)
    out_a, state_a = S.stream(model, ids[:, :7], ts[:, :7], state, buckets=(8,))
    out_b, state_b = S.stream(model, ids[:, 7:], ts[:, 7:], state_a, buckets=(8,))
    again, _ = S.stream(model, ids[:, 7:], ts[:, 7:], state_a, buckets=(8,))  # state_a untouched
    np.testing.assert_array_equal(np.asarray(out_b.logits), np.asarray(again.logits))
    assert state.num_events[0] == 0 and state_a.num_events[0] == 7 and state_b.num_events[0] == 20
    assert state_a.last_timestamp[0] == ts[0, 6] and state_b.last_timestamp.dtype == np.int64
    assert jax.tree_util.tree_leaves(state_b)  # a pytree


def test_longer_chunks_than_the_largest_bucket_and_default_buckets():
    model = case_model("cls-timepool-dirac-reference-readout")
    ids, ts = random_stream(seed=7)
    _, state = S.stream(model, ids[:, :1], ts[:, :1], S.init_stream(model, BATCH))  # default buckets: 1
    out, _ = S.stream(model, ids[:, 1:], ts[:, 1:], state, buckets=(8, 16))  # 60 events: 16, 16, 16, 12 → 16
    rel_close(out.logits, model(ids, ts).logits)


def test_bucketing_bounds_the_compile_count():
    assert {S._bucket(n, S.BUCKETS) for n in range(1, 10_000)} == set(S.BUCKETS)
    assert [S._bucket(n, (2, 8, 32)) for n in (1, 2, 3, 8, 9, 32, 33, 500)] == [2, 2, 8, 8, 32, 32, 32, 32]
    model = case_model("cls-timepool-masked-readout-stride1")
    key = S.model_fingerprint(model)
    before = S.TRACE_COUNTS[key]
    ids, ts = random_stream(seed=11, batch=1, length=200)
    state, pos = S.init_stream(model, 1), 0
    for n in list(range(1, 18)) + [40, 3, 1]:  # 20 different chunk lengths
        _, state = S.stream(model, ids[:, pos:pos + n], ts[:, pos:pos + n], state, buckets=(2, 8, 32),
                            implementation="xla")
        pos += n
    assert S.TRACE_COUNTS[key] - before == 3  # one compilation per bucket, whatever the lengths
    with pytest.raises(ValueError, match="buckets"):
        S.stream(model, ids[:, :1], ts[:, :1], state, buckets=())


# kernel-covered configurations the parity cases run only with zoh (XLA only): batch norm, gap after
KERNEL_CASES = {
    "cls-batch-async-after-last-first-conj": ("cls", dict(norm="batch", gap_convention="after", pooling_mode="last",
                                                          pooling_keep="first", conj_sym=True)),
    "ne-batch-dirac-stride1": ("ne", dict(norm="batch", discretization="dirac", pooling_stride=1, num_stages=1)),
}


@pytest.mark.parametrize("name", list(KERNEL_CASES))
def test_cpu_kernel_equals_the_xla_step_batch_norm(name):
    head, overrides = KERNEL_CASES[name]
    check_kernel_against_xla(name, head, make_model(head, seed=3, **overrides))


def test_cpu_kernel_equals_the_xla_step(case):
    name, head, model = case
    if "cpu-kernel" not in implementations(model):
        pytest.skip("zoh: the XLA step only (tested above)")
    check_kernel_against_xla(name, head, model)


def check_kernel_against_xla(name, head, model):
    """Same outputs and the same state rows chunk by chunk (random chunkings, both heads, every case the
    kernel covers), and the two implementations continue each other's states."""
    ids, ts = random_stream(seed=5 + len(name))
    states = {impl: S.init_stream(model, BATCH) for impl in ("xla", "cpu-kernel")}
    mixed, pos = S.init_stream(model, BATCH), 0
    for k, n in enumerate([1, 1, 2, 7, 3, 16, 1, 30]):
        outs = {}
        for impl in states:
            outs[impl], states[impl] = S.stream(model, ids[:, pos:pos + n], ts[:, pos:pos + n], states[impl],
                                                buckets=(8, 32), implementation=impl)
        out_mixed, mixed = S.stream(model, ids[:, pos:pos + n], ts[:, pos:pos + n], mixed, buckets=(8, 32),
                                    implementation=("xla", "cpu-kernel")[k % 2])
        pos += n
        rel_close(outs["cpu-kernel"].logits, outs["xla"].logits)
        rel_close(out_mixed.logits, outs["xla"].logits)
        rel_close(states["cpu-kernel"].buffer, states["xla"].buffer)
        rel_close(mixed.buffer, states["xla"].buffer)
        if head == "ne":
            rel_close(outs["cpu-kernel"].gap_log_scales, outs["xla"].gap_log_scales)
            rel_close(outs["cpu-kernel"].gap_log_means, outs["xla"].gap_log_means)
    with pytest.raises(ValueError, match="implementation must be one of"):
        S.stream(model, ids[:, :1], ts[:, :1], S.init_stream(model, BATCH), implementation="numba")


def test_cpu_kernel_functions_match_float64():
    """The kernel's complex exponential, exponential, GELU and layer norm against float64 numpy."""
    K = S.cpu_kernel
    rng = np.random.default_rng(4)
    lam = (-rng.uniform(0, 3, 256) + 1j * rng.normal(0, 40, 256)).astype(np.complex64)
    e_re, e_im = np.empty(256, np.float32), np.empty(256, np.float32)
    for t in (0.0, 1e-4, 0.37, 8.0, 300.0):  # up to underflow and |θ| ~ 10^4
        K._cexp(lam.real.copy(), lam.imag.copy(), np.float32(t), e_re, e_im)
        re, im = lam.real * np.float32(t), lam.imag * np.float32(t)  # the float32 arguments the kernel forms
        ref = np.exp(re.astype(np.float64) + 1j * im.astype(np.float64))
        assert np.max(np.abs(e_re + 1j * e_im - ref)) <= 1e-6 * max(np.max(np.abs(ref)), 1e-30) + 1e-37
    x = rng.uniform(-80, 80, 4096).astype(np.float32)
    got = x.copy()
    K._exp_inplace(got)
    assert np.max(np.abs(got / np.exp(x.astype(np.float64)) - 1)) < 2e-6
    y = rng.normal(0, 3, (13, 40)).astype(np.float32)
    y64 = y.astype(np.float64)
    gelu = 0.5 * y64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (y64 + 0.044715 * y64**3)))
    assert np.max(np.abs(K._gelu(y) - gelu)) < 2e-6 * np.max(np.abs(gelu))
    y = y + rng.normal(0, 4, (13, 1)).astype(np.float32)  # per-row offsets
    scale, bias = rng.normal(1, 0.3, 40).astype(np.float32), rng.normal(0, 0.5, 40).astype(np.float32)
    y64 = y.astype(np.float64)
    ref = (y64 - y64.mean(-1, keepdims=True)) / np.sqrt(y64.var(-1, keepdims=True) + 1e-6) * scale + bias
    assert np.max(np.abs(K._layer_norm(y, scale, bias, 1e-6) - ref)) < 2e-5 * np.max(np.abs(ref))


def test_cpu_kernel_recurrence_computes_each_distinct_gap_once():
    """_recurrence (one exp(Λ·s·Δt) per distinct Δt of a call, Δt = 0 as a plain add) equals the step-by-step
    recurrence with the decay computed at every position, bit for bit, and float64 complex arithmetic to float32
    rounding: gaps that repeat, zero gaps, and more distinct gaps than the lookup table's starting size."""
    K = S.cpu_kernel
    rng = np.random.default_rng(7)
    p, stride = 8, 4
    lam = (-rng.uniform(0.1, 3, p) + 1j * rng.normal(0, 20, p)).astype(np.complex64)
    lam_re, lam_im = lam.real.copy(), lam.imag.copy()
    table = rng.normal(0, 1, (5, 2 * p)).astype(np.float32)
    x0 = rng.normal(0, 1, 2 * p).astype(np.float32)
    for dt in (rng.choice(np.float32([0, 1e-3, 2e-3, 7e-3, 0.5]), 61),  # repeats and zeros
               rng.uniform(0, 0.1, 45).astype(np.float32)):  # all distinct
        rows = rng.integers(0, 5, dt.shape[0])
        last, first = K._recurrence(lam_re, lam_im, table, rows, dt, stride, True, x0)
        x_re, x_im = x0[:p].copy(), x0[p:].copy()
        z = x0[:p].astype(np.complex128) + 1j * x0[p:]
        a = np.empty(2 * p, np.float32)
        for i, (row, gap) in enumerate(zip(rows, dt)):
            if gap == 0:
                x_re, x_im = x_re + table[row, :p], x_im + table[row, p:]
            else:
                K._cexp(lam_re, lam_im, gap, a[:p], a[p:])
                K._advance(x_re, x_im, a, table[row])
            z = np.exp(lam.astype(np.complex128) * np.float64(gap)) * z + (table[row, :p] + 1j * table[row, p:])
            if i % stride == 0:
                np.testing.assert_array_equal(first[i // stride], np.concatenate([x_re, x_im]))
            if i % stride == stride - 1 or i == dt.shape[0] - 1:
                np.testing.assert_array_equal(last[i // stride], np.concatenate([x_re, x_im]))
                np.testing.assert_allclose(x_re + 1j * x_im, z, rtol=1e-5, atol=1e-5 * np.abs(z).max())


def test_cpu_kernel_runs_its_matmuls_on_one_blas_thread(monkeypatch):
    """Inside the kernel's step every BLAS library runs single-threaded (its worker threads would wait for a busy
    core: issue 14), and the user's thread counts are back after the call, also after an error."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from eventlm.streaming import streamer_for

    K = S.cpu_kernel
    model = case_model("cls-avg-async-layer-mean-widen")
    kernel = streamer_for(model).cpu_kernel
    state = S.init_stream(model, 1)
    blas = lambda: [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]  # noqa: E731
    seen, step = [], K._step

    def recording(*args):
        seen.append(blas())
        return step(*args)

    monkeypatch.setattr(K, "_step", recording)
    ids, dt = np.array([[1, 2, 3]]), np.full((1, 3), 0.5, np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas() and set(blas()) == {2}
        kernel(np.asarray(state.buffer), np.asarray(state.logits), ids, dt, np.array([3]))
        assert seen == [[1] * len(blas())] and set(blas()) == {2}
        with pytest.raises(RuntimeError):
            with K.one_blas_thread():
                assert set(blas()) == {1}
                raise RuntimeError
        assert set(blas()) == {2}
    with threadpool_limits(limits=1, user_api="blas"), K.one_blas_thread():  # already one: nothing to set back
        assert set(blas()) == {1}


@pytest.fixture(scope="module")
def cls_model():
    return case_model("cls-avg-async-layer-mean-widen")


def test_bad_input_is_refused(cls_model):
    model = cls_model
    ids, ts = random_stream(seed=5, batch=1, length=12)
    state = S.init_stream(model, 1)
    _, state = S.stream(model, ids[:, :6], ts[:, :6], state, buckets=(8,))
    with pytest.raises(ValueError, match=r"starts at timestamp .* before the state's last timestamp"):
        S.stream(model, ids[:, 6:], ts[:, 6:] - 10**6, state)
    with pytest.raises(ValueError, match=r"batch_size=1"):
        S.stream(model, np.repeat(ids[:, 6:], 2, 0), np.repeat(ts[:, 6:], 2, 0), state)
    other = case_model("cls-timepool-dirac-reference-readout")
    with pytest.raises(ValueError, match="another model"):
        S.stream(other, ids[:, 6:], ts[:, 6:], state)
    with pytest.raises(ValueError, match="another model"):  # same weights shape, other head
        next_event = M.FlaxEventSSMForNextEventPrediction(model.config, _do_init=False)
        next_event.params = {"eventssm": model.params["eventssm"]}
        S.stream(next_event, ids[:, 6:], ts[:, 6:], state)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        S.stream(model, ids[:, 6:] + 100, ts[:, 6:], state)
    with pytest.raises(ValueError, match="decrease"):
        S.stream(model, ids[:, 6:], ts[:, 6:][:, ::-1], state)
    with pytest.raises(ValueError, match="integer µs"):
        S.stream(model, ids[:, 6:], ts[:, 6:].astype(np.float64), state)
    with pytest.raises(TypeError, match="StreamState"):
        S.stream(model, ids[:, 6:], ts[:, 6:], {"not": "a state"})
    with pytest.raises(TypeError, match="head"):
        S.init_stream(M.FlaxEventSSMModel(model.config, _do_init=False))
    with pytest.raises(ValueError, match="batch_size"):
        S.init_stream(model, 0)
    # nothing was damaged: the state goes on as if the bad chunks never came
    out, _ = S.stream(model, ids[:, 6:], ts[:, 6:], state, buckets=(8,))
    rel_close(out.logits, model(ids, ts).logits)


def test_empty_chunk_is_a_no_op(cls_model):
    model = cls_model
    ids, ts = random_stream(seed=6, batch=1, length=5)
    out, state = S.stream(model, ids, ts, S.init_stream(model, 1), buckets=(8,))
    same, state2 = S.stream(model, np.zeros((1, 0), np.int64), np.zeros((1, 0), np.int64), state)
    assert state2 is state
    np.testing.assert_array_equal(np.asarray(same.logits), np.asarray(out.logits))
    fresh = S.init_stream(model, 1)  # before any event: the classifier of a zero readout (its bias)
    np.testing.assert_allclose(np.asarray(S.stream(model, [], [], fresh)[0].logits[0]),
                               np.asarray(model.params["classifier"]["bias"]), rtol=1e-6)


def test_single_stream_1d_input_and_timestamp_ties(cls_model):
    model = cls_model
    ids, ts = random_stream(seed=9, batch=1, length=10)
    ts[0, 3:6] = ts[0, 3]  # equal timestamps are legal, also across chunks
    state = S.init_stream(model, 1)
    for a, b in ((0, 4), (4, 5), (5, 10)):
        out, state = S.stream(model, ids[0, a:b], ts[0, a:b], state, buckets=(8,))
    rel_close(out.logits, model(ids, ts).logits)


def test_complex_exp_matches_float64():
    rng = np.random.default_rng(0)
    re = -rng.uniform(0, 30, 20_000)
    im = np.concatenate([rng.normal(0, 3, 10_000), rng.uniform(-2e4, 2e4, 10_000)])  # incl. long gaps
    z = (re + 1j * im).astype(np.complex64)
    got = np.asarray(jax.jit(S.complex_exp)(jnp.asarray(z)))
    ref = np.exp(z.astype(np.complex128))  # of the same float32 inputs
    assert np.max(np.abs(got - ref) / np.abs(ref)) < 2e-6
    assert np.max(np.abs(got - np.asarray(jnp.exp(jnp.asarray(z)))) / np.abs(ref)) < 2e-6


def test_layer_norm_matches_float64():
    rng = np.random.default_rng(3)
    x = (rng.normal(0, 2, (7, 5, 48)) + rng.normal(0, 3, (7, 5, 1))).astype(np.float32)  # per-row offsets
    scale, bias = rng.normal(1, 0.3, 48).astype(np.float32), rng.normal(0, 0.5, 48).astype(np.float32)
    got = np.asarray(jax.jit(lambda a: S._layer_norm(a, scale, bias, 1e-6, jnp.float32))(x))
    x64 = x.astype(np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    ref = (x64 - mean) / np.sqrt(var + 1e-6) * scale + bias
    assert np.max(np.abs(got - ref)) < 2e-5 * np.max(np.abs(ref))


def test_state_buffer_unpacks_to_the_stream_so_far(cls_model):
    """The flat buffer holds what the state promises: open-window counts (events since the last closed
    window, per stage) and committed states that equal the recurrence run from the start."""
    model = cls_model
    ids, ts = random_stream(seed=11, batch=1, length=23)
    state = S.init_stream(model, 1)
    assert np.all(np.asarray(state.buffer) == 0) and state.buffer.shape == (1, state.layout.size)
    for a, b in ((0, 5), (5, 6), (6, 23)):
        _, state = S.stream(model, ids[:, a:b], ts[:, a:b], state)
    stride = model.config.pooling_stride
    stages = state.stages
    assert int(stages[0].window_count[0]) == 23 % stride  # 23 = 7 windows of 3 + 2 buffered events
    assert int(stages[1].window_count[0]) == (23 // stride) % stride
    np.testing.assert_array_equal(stages[0].window_inputs[0, :2], ids[0, 21:23])
    # the later stage keeps its buffered inputs' projections: B̃·norm(input) of its pooling block (float64 here)
    name = next(name for st, layer, name, *_ in model.config.block_plan() if st == 1 and layer == 0)
    from eventlm.streaming import streamer_for

    consts = streamer_for(model).compiled["prepare"]({"params": model.params})
    norm = model.params["eventssm"][name]["norm"]
    count, buffered = int(stages[1].window_count[0]), stages[1].window_inputs[0].astype(np.float64)
    assert count >= 1 and np.abs(buffered[:count]).max() > 0.1
    centred = buffered - buffered.mean(-1, keepdims=True)
    u = centred / np.sqrt(centred.var(-1, keepdims=True) + model.config.layer_norm_eps) * norm["scale"] + norm["bias"]
    want = u @ np.asarray(consts["blocks"][name]["B"], np.float64)
    rel_close(stages[1].window_projected[0, :count], want[:count])
    assert stages[0].window_projected.shape == (1, 0)  # stage 0 reads token tables
    again = S.init_stream(model, 1)
    _, again = S.stream(model, ids, ts, again)  # one chunk: the same state
    rel_close(again.buffer, state.buffer)
    assert state.readout.weighted_sum.shape == (1, model.config.output_hidden_size)


def test_plain_chunk_path_equals_the_checked_path(cls_model):
    """Plain integer chunks take a few-operation path; with an attention mask the full checks run: same
    numbers, same state."""
    ids, ts = random_stream(seed=12, batch=2, length=14)
    fast, slow = S.init_stream(cls_model, 2), S.init_stream(cls_model, 2)
    for a, b in ((0, 3), (3, 11), (11, 14)):
        out_f, fast = S.stream(cls_model, ids[:, a:b], ts[:, a:b], fast)
        out_s, slow = S.stream(cls_model, ids[:, a:b], ts[:, a:b], slow, attention_mask=np.ones((2, b - a), np.int8))
        np.testing.assert_array_equal(np.asarray(out_f.logits), np.asarray(out_s.logits))
    np.testing.assert_array_equal(np.asarray(fast.buffer), np.asarray(slow.buffer))
    np.testing.assert_array_equal(fast.last_timestamp, slow.last_timestamp)
    np.testing.assert_array_equal(fast.num_events, slow.num_events)


def test_packed_constants_round_trip():
    tree = {"a": jnp.arange(6.0).reshape(2, 3), "b": {"c": jnp.ones(4), "d": jnp.asarray([1 + 2j, 3j], jnp.complex64)},
            "e": jnp.asarray(7.0)}
    packed = S.PackedConstants.pack(tree)
    assert len(jax.tree_util.tree_leaves(packed)) == 3  # float32 vectors, complex64 vectors, the matrix
    back = jax.jit(lambda p: p.unpack())(packed)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), back, tree)


def test_sample_next_event():
    logits = jnp.asarray([0.0, 2.0, 1.0, 5.0])  # token 3 is banned
    banned = np.array([False, False, False, True])
    means, scales = jnp.log(jnp.asarray([1.0 + 1e-3, 9.0])), jnp.asarray([-3.0, 0.0])  # 1 ms (+1 µs) or 9 ms
    mix = jnp.asarray([3.0, 0.0])
    token, gap = S.sample_next_event(jax.random.PRNGKey(0), logits, mix, means, scales, 0.0, 1000.0, banned)
    assert int(token) == 1 and int(gap) == 1000  # greedy: best allowed token, main component's mode: 1 ms
    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    tokens, gaps = jax.vmap(lambda k: S.sample_next_event(k, logits, mix, means, scales, 1.0, 1000.0, banned))(keys)
    tokens, gaps = np.asarray(tokens), np.asarray(gaps)
    p = np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()
    np.testing.assert_allclose(np.bincount(tokens, minlength=4)[:3] / 4000, p, atol=0.03)
    assert not (tokens == 3).any() and (gaps >= 0).all()
    from scipy.stats import norm

    w = np.exp(3.0) / (np.exp(3.0) + 1)  # weight of the 1 ms component (all its gaps are < 2 ms)
    below = w + (1 - w) * norm.cdf(np.log(2.001) - np.log(9.0))  # P(gap < 2 ms) under the mixture
    assert abs(np.mean(gaps < 2000) - below) < 0.015


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------

PERIOD, GAP_US = 4, 1000


@pytest.fixture(scope="module")
def periodic_model():
    """A tiny next-event model trained (600 jitted Adam steps) on tokens 0,1,2,3,0,... every 1 ms."""
    cfg = EventSSMConfig(vocab_size=7, pad_token_id=4, bos_token_id=5, eos_token_id=6, hidden_size=16, state_size=8,
                         num_ssm_blocks=1, num_stages=1, num_layers_per_stage=2, pooling_stride=1, dropout=0.0,
                         num_mixture_components=2, dt_min=0.1, dt_max=1.0)
    model = M.FlaxEventSSMForNextEventPrediction(cfg, seed=0)
    rng = np.random.default_rng(0)
    batch, length = 8, 24
    opt = optax.adam(optax.cosine_decay_schedule(2e-2, 600, 0.05))

    @jax.jit
    def train_step(params, opt_state, ids, dt, mask):
        loss, grads = jax.value_and_grad(
            lambda p: model.module.apply({"params": p}, ids, dt, mask, labels=ids).loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params, opt_state = model.params, opt.init(model.params)
    for _ in range(600):  # windows as pretraining lays them out: bos, then events from a random phase
        phase = rng.integers(0, PERIOD, (batch, 1))
        ids = np.concatenate([np.full((batch, 1), cfg.bos_token_id), (phase + np.arange(length - 1)) % PERIOD], 1)
        ts = np.concatenate([[0], np.arange(length - 1) * GAP_US])[None].repeat(batch, 0)
        ids, dt, mask = M.prepare_inputs(cfg, ids, ts)
        params, opt_state, loss = train_step(params, opt_state, ids, dt, mask)
    model.params = params
    return model


def test_generation_gives_back_the_period(periodic_model, cls_model):
    from eventlm.tokenization_events import EventTokenizer

    tokens, times = S.generate(periodic_model, 16, temperature=0.0)
    assert tokens.dtype == np.int32 and times.dtype == np.int64 and len(tokens) == 16
    np.testing.assert_array_equal(np.diff(tokens) % PERIOD, 1)  # 0,1,2,3,0,... from some phase
    np.testing.assert_allclose(np.diff(times), GAP_US, rtol=0.05)
    prompt = (np.array([5, 2, 3]), np.array([10_000, 10_000, 11_000]))
    tokens, times = S.generate(periodic_model, 8, temperature=0.5, seed=3, prompt=prompt)
    np.testing.assert_array_equal(tokens, [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_allclose(np.diff(np.concatenate([[11_000], times])), GAP_US, rtol=0.1)
    a = S.generate(periodic_model, 70, temperature=1.0, seed=7)
    b = S.generate(periodic_model, 70, temperature=1.0, seed=7)
    c = S.generate(periodic_model, 70, temperature=1.0, seed=8)
    np.testing.assert_array_equal(a[0], b[0]), np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])  # another seed, other gaps
    assert np.mean(np.diff(a[0]) % PERIOD == 1) > 0.9
    tok = EventTokenizer(sensor_size=(4, 1, 1))  # 4 channels + pad/bos/eos = the model's 7 tokens
    events = S.generate(periodic_model, 6, temperature=0.0, tokenizer=tok, prompt=prompt)
    assert events.dtype.names == ("t", "x", "y", "p")
    np.testing.assert_array_equal(events["x"], [0, 1, 2, 3, 0, 1])
    events, state = S.generate(periodic_model, 5, temperature=0.0, tokenizer=tok, prompt=prompt, return_state=True)
    assert state.num_events[0] == 3 + 5 and state.last_timestamp[0] == events["t"][-1]
    with pytest.raises(ValueError, match="temperature"):
        S.generate(periodic_model, 3, temperature=-1.0)
    with pytest.raises(TypeError, match="NextEventPrediction"):
        S.generate(cls_model, 3)


@pytest.mark.parametrize("num_events", [5, 8])  # 8: whole blocks of 4, the state comes from the device
def test_generation_state_continues_the_stream(periodic_model, num_events):
    prompt = (np.array([5, 1]), np.array([0, 0]))
    (tokens, times), state = S.generate(periodic_model, num_events, temperature=0.7, seed=2, prompt=prompt,
                                        return_state=True, block=4)
    out, _ = S.stream(periodic_model, [0], [int(times[-1]) + 1000], state)
    full = periodic_model(np.concatenate([[5, 1], tokens, [0]])[None],
                          np.concatenate([[0, 0], times, [times[-1] + 1000]])[None])
    rel_close(out.logits[0, -1], full.logits[0, -1])
    rel_close(out.gap_log_means[0, -1], full.gap_log_means[0, -1])


# ------------------------------------------------------------------------------------------------
# eventlm stream MODEL RECORDING
# ------------------------------------------------------------------------------------------------


def test_run_stream_plays_a_recording(tmp_path, cls_model):
    from eventlm.data.events import EVENT_DTYPE
    from eventlm.tokenization_events import EventTokenizer

    model = cls_model
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    EventTokenizer(sensor_size=(20, 1, 1)).save_pretrained(folder)
    ids, ts = random_stream(seed=12, batch=1, length=45)
    events = np.zeros(45, EVENT_DTYPE)
    events["t"], events["x"] = ts[0] - ts[0, 0] + 123, ids[0]
    path = tmp_path / "rec.npy"
    np.save(path, events)
    printed = io.StringIO()
    run = S.run_stream(folder, path, chunk_size=8, plot=tmp_path / "pred.png", file=printed, sensor_size=(20, 1, 1))
    text = printed.getvalue()
    assert "events/s" in text and "events=        45" in text
    assert (tmp_path / "pred.png").stat().st_size > 0
    assert run.num_events[-1] == 45 and run.predictions.shape == (6, model.config.num_labels)
    ref = jax.nn.softmax(model(ids, ts).logits[0])
    rel_close(run.predictions[-1], ref)
    with pytest.raises(ValueError, match="chunk_size"):
        S.run_stream(folder, path, chunk_size=0)


def test_eventlm_stream_command(tmp_path, cls_model, capsys):
    from eventlm.cli import main
    from eventlm.data.events import EVENT_DTYPE

    cls_model.save_pretrained(tmp_path / "model")  # no tokenizer saved: one is built from the sensor
    events = np.zeros(20, EVENT_DTYPE)
    events["t"], events["x"] = np.arange(20) * 1000, np.arange(20) % 20
    np.save(tmp_path / "rec.npy", events)
    assert main(["stream", str(tmp_path / "model"), str(tmp_path / "rec.npy"), "--chunk-size", "8",
                 "--sensor-size", "20", "1", "1", "--plot", str(tmp_path / "p.svg")]) == 0
    out = capsys.readouterr().out
    assert "events=        20" in out and "events/s" in out and (tmp_path / "p.svg").is_file()


def test_run_stream_on_a_real_recording(realdata, tmp_path):
    from eventlm.tokenization_events import EventTokenizer

    tok = EventTokenizer.from_pretrained("nmnist")
    model = make_model("ne", vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    printed = io.StringIO()
    run = S.run_stream(tmp_path / "m", realdata / "tonic_test_data" / "sample_nmnist.bin", chunk_size=64,
                       max_events=300, file=printed, plot=tmp_path / "nll.png")
    assert run.num_events[-1] == 300 and np.isfinite(run.predictions).all() and "NLL/event" in printed.getvalue()
    assert (tmp_path / "nll.png").is_file()


# ------------------------------------------------------------------------------------------------
# implementation="auto"
# ------------------------------------------------------------------------------------------------


def test_choose_implementation_picks_the_faster_step():
    from eventlm.streaming import choose_implementation

    # each step's fastest call counts (the least disturbed by other processes), not its mean
    assert choose_implementation({"cpu-kernel": [3e-4, 2e-4], "xla": [1e-4, 9e-3]}) == "xla"
    assert choose_implementation({"cpu-kernel": [7e-5, 5e-3], "xla": [4e-4, 3e-4]}) == "cpu-kernel"
    assert choose_implementation({"cpu-kernel": [1e-4], "xla": [1e-4]}) == "cpu-kernel"  # a tie: no compilation
    assert choose_implementation({"xla": [1e-4], "cpu-kernel": []}) == "xla"
    with pytest.raises(ValueError, match="no trial timings"):
        choose_implementation({"xla": [], "cpu-kernel": []})


def test_auto_times_both_steps_once_and_keeps_the_choice(tmp_path, monkeypatch, caplog):
    """A trial at first use per chunk bucket, kept in $EVENTLM_CACHE (read back by another model object
    without a trial), readable as model.stream_implementation; the environment and explicit choices win."""
    import json
    import logging

    from eventlm import streaming

    monkeypatch.delenv("EVENTLM_STREAM_IMPLEMENTATION", raising=False)
    monkeypatch.setenv("EVENTLM_CACHE", str(tmp_path))
    picked = {}

    def fake_choice(timings):  # the real trial runs; the decision is made to alternate, never read from timings
        assert set(timings) == {"cpu-kernel", "xla"} and all(len(t) >= 3 and min(t) > 0 for t in timings.values())
        picked[len(picked)] = choice = ("xla", "cpu-kernel")[len(picked) % 2]
        return choice

    monkeypatch.setattr(streaming, "choose_implementation", fake_choice)
    model = make_model("cls")
    ids, ts = random_stream(seed=3, length=20, batch=1)
    assert model.stream_implementation is None
    with caplog.at_level(logging.INFO, logger="eventlm.streaming"):
        out, state = model.stream(ids[:, :3], ts[:, :3], model.init_stream(1))
    assert model.stream_implementation == "xla" and "timing the CPU kernel and the XLA step" in caplog.text
    out, state = model.stream(ids[:, 3:20], ts[:, 3:20], state)  # a new bucket (≤ 32 events): a second trial
    assert model.stream_implementation == "cpu-kernel" and len(picked) == 2
    ref = model(ids, ts).logits
    rel_close(out.logits, ref)  # whatever ran
    entries = json.loads((tmp_path / "stream_implementation.json").read_text())
    assert sorted(e["implementation"] for e in entries.values()) == ["cpu-kernel", "xla"]
    assert all("batch 1" in key and "chunks ≤" in key for key in entries)
    again = make_model("cls")  # another model object of the same shape: read back, no trial
    again.stream(ids[:, :3], ts[:, :3], again.init_stream(1))
    assert again.stream_implementation == "xla" and len(picked) == 2
    monkeypatch.setenv("EVENTLM_STREAM_IMPLEMENTATION", "cpu-kernel")
    again.stream(ids[:, :3], ts[:, :3], again.init_stream(1))
    assert again.stream_implementation == "cpu-kernel"
    again.stream(ids[:, :3], ts[:, :3], again.init_stream(1), implementation="xla")
    assert again.stream_implementation == "xla"
    monkeypatch.setenv("EVENTLM_STREAM_IMPLEMENTATION", "numba")
    with pytest.raises(ValueError, match="EVENTLM_STREAM_IMPLEMENTATION must be one of"):
        again.stream(ids[:, :3], ts[:, :3], again.init_stream(1))


def test_auto_keeps_models_the_kernel_does_not_cover_on_xla(tmp_path, monkeypatch):
    from eventlm import streaming

    monkeypatch.delenv("EVENTLM_STREAM_IMPLEMENTATION", raising=False)
    monkeypatch.setenv("EVENTLM_CACHE", str(tmp_path))
    monkeypatch.setattr(streaming, "_trial", lambda *a, **k: pytest.fail("no trial for a model the kernel does not cover"))
    model = make_model("cls", discretization="zoh")
    ids, ts = random_stream(seed=3, length=4, batch=1)
    model.stream(ids, ts, model.init_stream(1))
    assert model.stream_implementation == "xla" and not (tmp_path / "stream_implementation.json").exists()


# ------------------------------------------------------------------------------------------------
# scripts/benchmark_streaming.py
# ------------------------------------------------------------------------------------------------


def test_benchmark_functions(cls_model):
    from eventlm.models.eventssm import streaming_benchmark as B

    ids, ts = B.random_stream(cls_model.config, 64, seed=1)
    assert ids.max() < cls_model.config.vocab_size - 3 and (np.diff(ts) >= 0).all() and ts.dtype == np.int64
    rows = B.benchmark_model(cls_model, {"random": (ids, ts)}, chunks=(8,), latency_steps=4, max_chunks=3,
                             implementations=("auto", "xla"))
    assert [r[0] for r in rows] == ["1-event latency", "chunks of 8"] * 2
    assert [r[2] for r in rows] == ["cpu-kernel"] * 2 + ["xla"] * 2  # auto: the kernel ($EVENTLM_STREAM_IMPLEMENTATION)
    assert rows[0][3]["p99_us"] >= rows[0][3]["p50_us"] > 0 and rows[1][3]["events_per_s"] > 0
    assert all(r[3]["rates"]["gflops"] > 0 and r[3]["rates"]["gbps"] > 0 for r in rows)
    table = B.format_table({"tiny": rows}, machine="test machine", peaks={"gflops": 100.0, "gbps": 10.0}, busy=True)
    assert "test machine" in table and "ev/s" in table and "p50" in table and "GFLOP/s" in table and "busy" in table


def test_distance_to_peak_arithmetic():
    """achieved rates and their percentages of the measured peaks (arithmetic only, nothing timed)."""
    from eventlm.data.benchmark import achieved, format_peaks, format_rates, percent_of_peak, xla_cost
    from eventlm.models.eventssm.streaming_cpu_kernel import work_per_chunk

    rates = achieved(flops=3e9, nbytes=1.5e9, seconds=0.5)
    assert rates == pytest.approx({"gflops": 6.0, "gbps": 3.0})
    assert percent_of_peak(rates, {"gflops": 60.0, "gbps": 12.0}) == pytest.approx({"gflops": 10.0, "gbps": 25.0})
    assert format_rates(rates, {"gflops": 60.0, "gbps": 12.0}) == "6.00 GFLOP/s 10.0% · 3.00 GB/s 25.0%"
    assert format_rates(None, {"gflops": 1.0, "gbps": 1.0}) == "-"
    with_cache = {"gflops": 60.0, "gbps": 12.0, "cache_gbps": 40.0}
    assert format_rates(rates, with_cache) == "6.00 GFLOP/s 10.0% · 3.00 GB/s 25.0% (cache 7.5%)"
    assert "cache read 40.0 GB/s" in format_peaks(with_cache, busy=False)
    from eventlm.data.benchmark import measure_peaks

    peaks = measure_peaks(matmul_size=64, copy_mb=1, cache_mb=1, repeats=1)  # tiny: runs, positive, nothing more
    assert set(peaks) == {"gflops", "gbps", "cache_gbps"} and min(peaks.values()) > 0
    assert "busy" in format_peaks({"gflops": 1.0, "gbps": 2.0}, busy=True)
    assert "quiet" in format_peaks({"gflops": 1.0, "gbps": 2.0}, busy=False)

    class Compiled:  # cost_analysis as jax returns it (a dict; older versions: a list of one dict)
        def __init__(self, cost):
            self.cost = cost

        def cost_analysis(self):
            return self.cost

    assert xla_cost(Compiled({"flops": 8.0, "bytes accessed": 4.0})) == (8.0, 4.0)
    assert xla_cost(Compiled([{"flops": 8.0, "bytes accessed": 4.0}])) == (8.0, 4.0)
    assert xla_cost(Compiled({})) is None
    # the kernel's count of its work (the tiny test model)
    from eventlm.streaming import streamer_for

    cfg = EventSSMConfig(**TINY)
    streamer = streamer_for(M.FlaxEventSSMForSequenceClassification(cfg, seed=0))
    row = streamer.layout.size  # the whole state row, window slots included
    flops, nbytes = work_per_chunk(cfg, 1, "classification", row)
    assert flops > 0 and nbytes > 4 * (cfg.num_labels * cfg.output_hidden_size + 2 * row)
    f16, b16 = work_per_chunk(cfg, 16, "classification", row)
    assert f16 > flops and b16 > nbytes  # more events, more work; the weights are read once either way
    # the weights counted ≈ what the kernel packs besides its token tables and embedding (it also packs the first
    # block's B̃, which the tables replace, and the small vectors the count leaves out: 80 % here, 97 % for DVS)
    constants = streamer.constants.unpack()
    tables = (np.asarray(constants["table_u"]).size + np.asarray(constants["table_bu"]).size
              + constants["variables"]["params"]["eventssm"]["embed"]["embedding"].size)
    per_event = 2 * cfg.stored_state_size(cfg.block_plan()[0][5]) + 2 * cfg.hidden_size
    counted = nbytes / 4 - 2 * row - per_event
    assert 0.7 * (streamer.cpu_kernel.weights.size - tables) <= counted <= streamer.cpu_kernel.weights.size - tables


def test_benchmark_script(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_streaming.py"
    spec = importlib.util.spec_from_file_location("benchmark_streaming", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = script.main(["--presets", "tiny", "--chunks", "4", "--events", "40", "--latency-steps", "3",
                           "--max-chunks", "2", "--realdata", "/nonexistent", "--implementations", "cpu-kernel", "xla"])
    assert list(results) == ["tiny"] and "eventlm streaming benchmark" in capsys.readouterr().out


def test_recording_stream_fits_the_vocabulary(realdata):
    from eventlm.models.eventssm import streaming_benchmark as B

    cfg = EventSSMConfig.from_preset("tiny")  # 700 channels: the 320x240 DVXplorer is downsampled to fit
    ids, ts = B.recording_stream(cfg, realdata / "tonic_test_data" / "sample.aedat4", max_events=5000)
    assert len(ids) == 5000 and 0 <= ids.min() and ids.max() < 700 and ts[0] == 0 and (np.diff(ts) >= 0).all()
