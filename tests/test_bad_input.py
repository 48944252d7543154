"""Bad input never crashes and never silently lies (issue 15): damaged stream states are refused on both
streaming implementations (the CPU kernel used to segfault), values that would wrap or overflow are
refused or kept exact, and every error names the problem, the value and the fix."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from eventlm.models.eventssm import modeling_flax_eventssm as M
from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig
from eventlm.streaming import init_stream, stream

TINY = dict(vocab_size=23, pad_token_id=20, bos_token_id=21, eos_token_id=22, hidden_size=8, state_size=8,
            num_ssm_blocks=2, num_stages=2, num_layers_per_stage=2, pooling_stride=3, dropout=0.0, num_labels=5)
IMPLEMENTATIONS = ("cpu-kernel", "xla")


@pytest.fixture(scope="module")
def model():
    return M.FlaxEventSSMForSequenceClassification(EventSSMConfig(**TINY), seed=1)


@pytest.fixture(scope="module")
def after_model():
    return M.FlaxEventSSMForSequenceClassification(EventSSMConfig(**TINY, gap_convention="after"), seed=1)


IDS, TS = np.array([[1, 2, 3, 4]]), np.array([[10, 20, 30, 40]])


def _started(model, implementation):
    return stream(model, IDS, TS, init_stream(model, 1), implementation=implementation)[1]


def _window_slot(state):
    """The flat column of stage 0's first open-window token slot (an int32 leaf of the layout)."""
    return next(a for a, n, _, dtype in state.layout.entries if dtype == np.int32 and n > 1)


def _count_column(state):
    return next(a for a, n, shape, dtype in state.layout.entries if dtype == np.int32 and shape == ())


def test_forged_pending_token_segfault_reproducer_runs_in_a_subprocess():
    """The issue's reproducer: a forged pending token crashed the process in the CPU kernel (SIGSEGV)."""
    code = textwrap.dedent(f"""
        import numpy as np
        from eventlm.models.eventssm import modeling_flax_eventssm as M
        from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig
        from eventlm.streaming import init_stream, stream
        m = M.FlaxEventSSMForSequenceClassification(EventSSMConfig(**{TINY!r}, gap_convention="after"), seed=1)
        _, s = stream(m, np.array([[1, 2]]), np.array([[1, 2]]), init_stream(m, 1), implementation="cpu-kernel")
        s = s.replace(pending_token=np.array([10**8], np.int32))
        try:
            stream(m, np.array([[1, 2]]), np.array([[3, 4]]), s, implementation="cpu-kernel")
        except ValueError as e:
            print("REFUSED", e)
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REFUSED" in done.stdout and "pending_token 100000000" in done.stdout


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_forged_pending_token_is_refused(after_model, implementation):
    state = _started(after_model, implementation).replace(pending_token=np.array([10**8], np.int32))
    with pytest.raises(ValueError, match=r"pending_token 100000000.*init_stream"):
        stream(after_model, IDS, TS + 100, state, implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("value", [1e9, -1e9, 2.5, np.nan])
def test_forged_window_token_slot_is_refused(model, implementation, value):
    state = _started(model, implementation)
    buffer = np.array(state.buffer)
    buffer[0, _window_slot(state)] = value
    with pytest.raises(ValueError, match="stream state is damaged"):
        stream(model, IDS, TS + 100, state.replace(buffer=buffer), implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_forged_window_count_and_shapes_are_refused(model, implementation):
    state = _started(model, implementation)
    buffer = np.array(state.buffer)
    buffer[0, _count_column(state)] = 1e6
    with pytest.raises(ValueError, match=r"index or count in \[0, 2\]"):
        stream(model, IDS, TS + 100, state.replace(buffer=buffer), implementation=implementation)
    with pytest.raises(ValueError, match="buffer"):
        stream(model, IDS, TS + 100, state.replace(buffer=np.zeros((1, 5), np.float32)), implementation=implementation)
    with pytest.raises(ValueError, match="num_events"):
        stream(model, IDS, TS + 100, state.replace(num_events=np.array([-3])), implementation=implementation)
    with pytest.raises(ValueError, match="stream state is damaged"):
        stream(model, IDS, TS + 100, state.replace(pending_token=[-1]), implementation=implementation)
    with pytest.raises(ValueError, match="stream state is damaged"):
        stream(model, IDS, TS + 100, state.replace(logits=None), implementation=implementation)


def test_state_damaged_in_place_after_a_step_is_refused(model):
    """The CPU kernel's numpy buffer comes back read-only (numpy refuses an edit in place, so it is not scanned
    again); one made writeable again and damaged is scanned and refused, as is a damaged copy."""
    state = _started(model, "cpu-kernel")
    assert isinstance(state.buffer, np.ndarray) and not state.buffer.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        state.buffer[0, _window_slot(state)] = 1e9
    state.buffer.flags.writeable = True
    state.buffer[0, _window_slot(state)] = 1e9
    with pytest.raises(ValueError, match="stream state is damaged"):
        stream(model, IDS, TS + 100, state, implementation="cpu-kernel")
    state = _started(model, "cpu-kernel")
    damaged = np.array(state.buffer)
    damaged[0, _count_column(state)] = np.nan
    with pytest.raises(ValueError, match="stream state is damaged"):
        stream(model, IDS, TS + 100, state.replace(buffer=damaged), implementation="cpu-kernel")


def test_cpu_kernel_bounds_checks_its_own_inputs(model):
    """Below the driver: the kernel refuses out-of-range ids and counts itself (never reads out of bounds)."""
    from eventlm.streaming import streamer_for

    kernel = streamer_for(model).cpu_kernel
    state = init_stream(model, 1)
    buffer, logits = np.asarray(state.buffer), np.asarray(state.logits)
    dt = np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError, match="outside the model's tables"):
        kernel(buffer, logits, np.array([[1, 10**8]]), dt, np.array([2]))
    with pytest.raises(ValueError, match="outside the model's tables"):
        kernel(buffer, logits, np.array([[1, 2]]), dt, np.array([50]))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_huge_gap_streams_what_the_full_forward_gives(model, implementation):
    """A gap of 1e18 µs was NaN in streaming but finite in the full forward."""
    ids, ts = np.array([[1, 2, 3, 4, 1]]), np.array([[10, 20, 30, 40, 40 + 10**18]])
    full = np.asarray(model(ids, ts).logits)
    out, state = stream(model, ids[:, :4], ts[:, :4], init_stream(model, 1), implementation=implementation)
    out, state = stream(model, ids[:, 4:], ts[:, 4:], state, implementation=implementation)
    assert np.isfinite(np.asarray(out.logits)).all()
    np.testing.assert_allclose(np.asarray(out.logits), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_uint64_timestamps_past_int64_are_refused(model, implementation):
    """uint64 timestamps ≥ 2^63 wrapped to negative int64 and gave NaN logits and a poisoned state."""
    state = init_stream(model, 1)
    ts = np.array([[2**63, 2**63 + 5]], np.uint64)
    with pytest.raises(ValueError, match=r"past the int64 µs range"):
        stream(model, IDS[:, :2], ts, state, implementation=implementation)
    with pytest.raises(ValueError, match=r"past the int64 µs range"):
        model(IDS[:, :2], ts)
    out, _ = stream(model, IDS[:, :2], np.array([[5, 9]], np.uint64), state, implementation=implementation)
    assert np.isfinite(np.asarray(out.logits)).all()


# ------------------------------------------------------------------------------------------------
# Configs: values that give NaN logits, and sizes that would allocate gigabytes, are refused up front


@pytest.mark.parametrize("field, value", [
    ("layer_norm_eps", float("nan")), ("layer_norm_eps", -1.0), ("time_unit_us", float("inf")),
    ("time_unit_us", float("nan")), ("timepool_eps", float("nan")), ("step_rescale", float("inf")),
    ("batchnorm_eps", float("nan")), ("state_size", 40_000), ("num_stages", 1000), ("hidden_size", 10**6),
    ("vocab_size", 2**25), ("num_labels", 10**9), ("num_layers_per_stage", 10**4), ("bos_token_id", 10**6),
])
def test_bad_config_values_are_refused_at_construction(field, value):
    with pytest.raises(ValueError, match=field):
        EventSSMConfig(**{**TINY, field: value})


def test_bad_config_json_values_are_refused_on_load(tmp_path, model):
    import json

    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "layer_norm_eps": float("nan")}))  # json writes NaN
    with pytest.raises(ValueError, match="layer_norm_eps must be a finite number > 0, got nan"):
        M.FlaxEventSSMForSequenceClassification.from_pretrained(tmp_path / "m")


# ------------------------------------------------------------------------------------------------
# Weights files that do not hold the model's weights are refused (they loaded a random model)


def _damaged_copy(model, folder, change):
    from safetensors.numpy import load_file, save_file

    model.save_pretrained(folder)
    tensors = load_file(folder / "model.safetensors")
    save_file(change(tensors), folder / "model.safetensors")
    return folder


def _flip_a_bit(tensors):
    key = "params.eventssm.stage0_block0.ssm.B"
    bad = bytearray(key.encode())
    bad[len("params.eventssm.s")] ^= 0x01
    return {**{k: v for k, v in tensors.items() if k != key}, bad.decode(): tensors[key]}


@pytest.mark.parametrize("change, named", [
    (lambda t: {}, "holds no tensors"),
    (lambda t: {k.replace("embed", "embedding_table"): v for k, v in t.items()}, "embedding_table"),
    (_flip_a_bit, "params.eventssm.stage0_block0.ssm.B"),
    (lambda t: {k: v for k, v in t.items() if k != "params.classifier.kernel"}, "params.classifier.kernel"),
])
def test_weights_with_missing_or_renamed_keys_are_refused(tmp_path, model, change, named):
    folder = _damaged_copy(model, tmp_path / "m", change)
    with pytest.raises(ValueError, match=r"missing \[.*" if named != "holds no tensors" else named) as err:
        M.FlaxEventSSMForSequenceClassification.from_pretrained(folder)
    assert named in str(err.value) and "allow_missing_weights=True" in str(err.value)
    loaded = M.FlaxEventSSMForSequenceClassification.from_pretrained(folder, allow_missing_weights=True)
    assert loaded.params["classifier"]["kernel"].shape == (8, 5)


def test_a_checkpoint_of_another_head_still_loads_with_a_fresh_head(tmp_path, model):
    model.save_pretrained(tmp_path / "m")
    other = M.FlaxEventSSMForNextEventPrediction.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(np.asarray(other.params["eventssm"]["embed"]["embedding"]),
                                  np.asarray(model.params["eventssm"]["embed"]["embedding"]))


# ------------------------------------------------------------------------------------------------
# Recordings: values that wrapped or shifted silently, and foreign exceptions, become clear errors


from eventlm.data.events import as_events, check_sensor_size  # noqa: E402
from eventlm.data.readers import read_events  # noqa: E402


def _nas(path, addr, ticks, address_bytes=2):
    raw = np.empty(len(addr), [("addr", f">u{address_bytes}"), ("ts", ">u4")])
    raw["addr"], raw["ts"] = addr, ticks
    raw.tofile(path)
    return path


def test_coordinates_past_int16_are_refused_not_wrapped(tmp_path):
    with pytest.raises(ValueError, match=r"'x' has value 40000 at index 1, past the event schema's range"):
        as_events({"t": [0, 1], "x": np.array([3, 40_000], np.int64), "y": [0, 0], "p": [0, 1]})
    with pytest.raises(ValueError, match=r"'y' has value 32768"):
        as_events({"t": [0], "x": [0], "y": np.array([32768], np.uint16), "p": [0]})
    table = np.zeros(2, [("t", "<i8"), ("x", "<i4"), ("y", "<i4"), ("p", "<i1")])
    table["x"] = [1, 70_000]
    np.save(tmp_path / "big.npy", table)
    with pytest.raises(ValueError, match=r"big.npy.*70000"):
        read_events(tmp_path / "big.npy")
    path = _nas(tmp_path / "wide.aedat", [0, 2 * 40_000], [1, 2], address_bytes=4)
    with pytest.raises(ValueError, match=r"\(65536, 1, 2\) for .*wide.aedat is larger than the event schema"):
        read_events(path, format="nas", channels=65_536, address_bytes=4, on_off=True)
    with pytest.raises(ValueError, match="larger than the event schema holds"):
        check_sensor_size((99_999_999, 99_999_999, 2))
    # one polarity ignores p, whatever it holds (tonic's SHD carries p = 1)
    assert as_events({"t": [0], "x": [0], "p": [1]}, (700, 1, 1))["p"][0] == 0


@pytest.mark.parametrize("kind", ["nas", "aedat2", "dat"])
def test_a_corrupt_timestamp_word_is_not_taken_for_a_wrap(tmp_path, kind):
    """A single 0xFFFFFFFF timestamp word shifted every later event by 2^32 ticks."""
    ticks = np.array([100, 200, 0xFFFFFFFF, 300, 400], np.int64)
    if kind == "nas":
        path = _nas(tmp_path / "n.aedat", [0, 2, 4, 6, 8], ticks)
        read = lambda: read_events(path, format="nas", channels=64)  # noqa: E731
    elif kind == "aedat2":
        raw = np.empty(5, [("addr", ">u4"), ("ts", ">u4")])
        raw["addr"], raw["ts"] = 5 << 1 | 5 << 8, ticks
        path = tmp_path / "d.aedat"
        with open(path, "wb") as f:
            f.write(b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n")
            raw.tofile(f)
        read = lambda: read_events(path)  # noqa: E731
    else:
        ev = np.empty(5, [("ts", "<u4"), ("data", "<u4")])
        ev["ts"], ev["data"] = ticks, 3 | 4 << 14
        path = tmp_path / "c.dat"
        path.write_bytes(b"% Data file containing CD events\n% Width 304\n% Height 240\n" + bytes([0, 8]) + ev.tobytes())
        read = lambda: read_events(path)  # noqa: E731
    with pytest.raises(ValueError, match=r"event 2 has timestamp word 0xffffffff.*corrupt timestamp word"):
        read()


def test_dat_polarity_past_one_is_refused(tmp_path):
    ev = np.empty(3, [("ts", "<u4"), ("data", "<u4")])
    ev["ts"], ev["data"] = [1, 2, 3], np.array([0, 15 << 28, 1 << 28], np.int64) | 3
    path = tmp_path / "p.dat"
    path.write_bytes(b"% Data file containing CD events\n" + bytes([0, 8]) + ev.tobytes())
    with pytest.raises(ValueError, match=r"p.dat: event 1 has polarity 15"):
        read_events(path)


def test_dat_absurd_geometry_is_refused(tmp_path):
    ev = np.empty(1, [("ts", "<u4"), ("data", "<u4")])
    ev["ts"], ev["data"] = [1], [3]
    path = tmp_path / "g.dat"
    path.write_bytes(b"% geometry 99999999x99999999\n" + bytes([0, 8]) + ev.tobytes())
    with pytest.raises(ValueError, match=r"g.dat.*larger than the event schema holds"):
        read_events(path)


def test_corrupt_aedat4_panic_becomes_a_value_error_naming_the_file(realdata, tmp_path):
    """aedat (pyo3) raises PanicException, a BaseException that `except Exception` does not catch."""
    data = bytearray((realdata / "tonic_test_data" / "sample.aedat4").read_bytes())
    data[1079] ^= 0xFF  # inside the XML description: the Rust XML parser panics
    path = tmp_path / "bad.aedat4"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad.aedat4 \(format 'aedat4'\): not a readable aedat4 file.*Panic"):
        read_events(path)


def test_foreign_exceptions_name_the_file(tmp_path):
    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04 not really a zip")  # BadZipFile
    with pytest.raises(ValueError, match=r"z.npz \(format 'npz'\).*BadZipFile"):
        read_events(tmp_path / "z.npz")
    (tmp_path / "u.csv").write_bytes(b"t,x,y,p\n1,2,3,\xff\xfe\n")  # UnicodeDecodeError
    with pytest.raises(ValueError, match=r"u.csv \(format 'csv'\).*UnicodeDecodeError"):
        read_events(tmp_path / "u.csv")


def test_npy_claiming_an_absurd_shape_is_refused_before_allocating(tmp_path):
    table = np.zeros(4, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
    np.save(tmp_path / "e.npy", table)
    data = (tmp_path / "e.npy").read_bytes().replace(b"(4,)", b"(20000000000,)", 1)
    (tmp_path / "e.npy").write_bytes(data)
    with pytest.raises(ValueError, match=r"e.npy: its header claims an array of shape \(20000000000,\)"):
        read_events(tmp_path / "e.npy")
    np.savez(tmp_path / "e.npz", t=np.arange(3), x=np.arange(3))
    import zipfile
    with zipfile.ZipFile(tmp_path / "e.npz") as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["t.npy"] = members["t.npy"].replace(b"(3,)", b"(9000000000,)", 1)
    with zipfile.ZipFile(tmp_path / "f.npz", "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(ValueError, match=r"f.npz \(array 't'\): its header claims"):
        read_events(tmp_path / "f.npz")


# ------------------------------------------------------------------------------------------------
# The collator: labels and pre-tokenized rows are checked, never cast silently


@pytest.fixture(scope="module")
def collator():
    from eventlm.data.collator import EventCollator
    from eventlm.tokenization_events import EventTokenizer

    return EventCollator(EventTokenizer.from_pretrained("shd"))


def _row(label=0, **tokens):
    return {"t": [1, 2, 3], "x": [4, 5, 6], "label": label, **tokens}


def test_collator_labels_are_not_wrapped_or_misread(collator):
    with pytest.raises(ValueError, match=r"sample 1 has label 1099511627776"):
        collator([_row(0), _row(2**40)])
    with pytest.raises(ValueError, match=r"sample 0 has label 'cat'; class labels must be integer class ids"):
        collator([_row("cat")])
    with pytest.raises(ValueError, match="class labels must be integers, got nan"):
        collator([_row(float("nan"))])
    assert collator([_row(3), _row(4.0)])["labels"].tolist() == [3, 4]


@pytest.mark.parametrize("timestamps, mask, message", [
    ([1.0, float("nan"), 3.0], [1, 1, 1], "sample 0: timestamps must be integer µs, got nan"),
    ([0.7, 1.0, 2.0], [1, 1, 1], "sample 0: timestamps must be integer µs, got 0.7"),
    ([1, 2, 3], [1, 5, 1], "attention_mask must hold 0/1, got 5"),
    ([3, 2, 1], [1, 1, 1], "timestamps decrease"),
    (np.array([1, 2, 2**63], np.uint64), [1, 1, 1], "past the int64 µs range"),
])
def test_pretokenized_rows_get_the_model_input_checks(collator, timestamps, mask, message):
    row = {"input_ids": np.array([1, 2, 3]), "timestamps": timestamps, "attention_mask": mask, "label": 0}
    with pytest.raises(ValueError, match=message):
        collator([row])
    ok = {"input_ids": np.array([1, 2, 3]), "timestamps": [1.0, 2.0, 3.0], "attention_mask": [1, 1, 0], "label": 0}
    assert collator([ok])["timestamps"][0, :3].tolist() == [1, 2, 3]


# ------------------------------------------------------------------------------------------------
# The CLI: a user's mistake is one line and exit status 2; subcommands have their own usage


def test_cli_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    from eventlm import cli

    monkeypatch.delenv("EVENTLM_DEBUG", raising=False)
    assert cli.main(["stream", str(tmp_path / "no-model"), str(tmp_path / "no.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eventlm stream: error: ") and "no.npy does not exist" in err
    assert "Traceback" not in err
    with pytest.raises(FileNotFoundError):
        cli.main(["stream", str(tmp_path / "no-model"), str(tmp_path / "no.npy"), "--debug"])
    monkeypatch.setenv("EVENTLM_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(["stream", str(tmp_path / "no-model"), str(tmp_path / "no.npy")])


def test_cli_subcommand_usage_flag_prefixes_and_did_you_mean(capsys):
    from eventlm import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pretrain", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: eventlm pretrain ") and "next-event prediction" in out
    with pytest.raises(SystemExit) as exit_info:  # a prefix is not silently taken for the flag
        cli.main(["train", "--num_train_epoch", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eventlm train: error: unrecognized argument --num_train_epoch (did you mean " \
        "--num_train_epochs?)" in err
    assert cli.main(["train", "--preset", "shd-tiny-typo"]) == 2
    assert "unknown --preset 'shd-tiny-typo'" in capsys.readouterr().err


def test_stream_refuses_a_recording_of_another_sensor(tmp_path, model):
    """A 20-channel model streamed an 8-channel cochlea recording without a word (a confident prediction)."""
    from eventlm.streaming import run_stream
    from eventlm.tokenization_events import EventTokenizer

    model.save_pretrained(tmp_path / "m")
    EventTokenizer(sensor_size=(20, 1, 1)).save_pretrained(tmp_path / "m")
    path = _nas(tmp_path / "cochlea.aedat", np.arange(0, 16, 2), np.arange(8) * 100)
    with pytest.raises(ValueError, match=r"cochlea.aedat comes from a \(8, 1, 2\) sensor .* tokenizer is for "
                                         r"\(20, 1, 1\).*--sensor-size 20 1 1"):
        run_stream(tmp_path / "m", path, format="nas", channels=8)


# ------------------------------------------------------------------------------------------------
# Resume survives a damaged latest checkpoint and a torn metrics line


def _run(folder, steps):
    from test_training import tiny_trainer  # (the tests folder is on sys.path under pytest)

    trainer = tiny_trainer(folder, max_steps=steps, save_steps=2, save_total_limit=2, async_checkpointing=False)
    start = trainer._checkpoints().latest_step()
    trainer.train()
    trainer.close()
    return start


def _damage_state(step_dir):
    for f in (step_dir / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\x00garbage" * 4)


def _damage_meta(step_dir):
    import json

    for f in (step_dir / "meta").rglob("*"):
        if f.is_file():
            try:
                meta = json.loads(f.read_text())
            except ValueError:
                continue
            if isinstance(meta, dict) and "position" in meta:
                f.write_text(json.dumps({**meta, "position": 10**9}))


@pytest.mark.parametrize("damage", [_damage_state, _damage_meta])
def test_resume_falls_back_to_the_older_intact_checkpoint(tmp_path, caplog, damage):
    import logging

    from eventlm.training.metrics import read_jsonl

    _run(tmp_path, 4)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    damage(tmp_path / "checkpoints" / "4")
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "st')  # killed while appending a line
    with caplog.at_level(logging.WARNING):
        _run(tmp_path, 6)
    assert "checkpoint step 4" in caplog.text and "damaged" in caplog.text and "dropping its last line" in caplog.text
    assert any(p.name.startswith("4-") for p in (tmp_path / "checkpoints-damaged").iterdir())
    steps = [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 3-4 re-run from checkpoint 2


def test_metrics_line_damaged_in_the_middle_is_named(tmp_path):
    from eventlm.training.metrics import read_jsonl

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not a JSON record"):
        read_jsonl(tmp_path / "metrics.jsonl")


# ------------------------------------------------------------------------------------------------
# Datasets are checked row by row before the first step (not at the first batch holding the bad row)


def _event_rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = {"t": [], "x": [], "y": [], "p": [], "label": []}
    for _ in range(n):
        k = int(rng.integers(5, 20))
        rows["t"].append(np.sort(rng.integers(0, 10_000, k)).tolist())
        rows["x"].append(rng.integers(0, 16, k).tolist())
        rows["y"].append([0] * k)
        rows["p"].append([1] * k)
        rows["label"].append(int(rng.integers(0, 3)))
    return rows


@pytest.mark.parametrize("field, value, message", [
    ("x", 5000, r"'train' split, row 217, field 'x', event 3: x = 5000 lies outside the sensor \(16, 1, 1\)"),
    ("t", -1, r"'train' split, row 217, field 't', event 3: timestamp -1 is negative"),
    ("t", 0, r"'train' split, row 217, field 't', event 3: timestamps decrease"),
])
def test_dataset_rows_are_checked_before_training(field, value, message):
    import datasets

    from eventlm.tokenization_events import EventTokenizer
    from eventlm.training.pipelines import check_event_rows

    rows = _event_rows()
    rows["t"][217] = [10, 20, 30, 40, 50, 60]
    for name in ("x", "y", "p"):
        rows[name][217] = rows[name][217][:1] * 6
    rows[field][217][3] = value
    tokenizer = EventTokenizer(sensor_size=(16, 1, 1))
    check_event_rows(datasets.Dataset.from_dict(_event_rows()), "train", tokenizer)  # a good one passes
    dataset = datasets.Dataset.from_dict(rows)
    with pytest.raises(ValueError, match=message):
        check_event_rows(dataset, "train", tokenizer)
    shuffled = dataset.select(list(range(200, 300)))  # row numbers are those of the split as the job sees it
    with pytest.raises(ValueError, match=message.replace("row 217", "row 17")):
        check_event_rows(shuffled, "train", tokenizer)


def test_training_job_refuses_a_bad_row_before_the_first_step(tmp_path, monkeypatch):
    import datasets
    from test_scripts import TINY, _script

    from eventlm.training import pipelines
    from eventlm.training.trainer import Trainer

    def refuse(self, *args, **kwargs):
        raise AssertionError("training started although a row was bad")

    monkeypatch.setattr(Trainer, "train", refuse)
    rows = _event_rows(40)
    rows["x"][33][0] = 5000
    bad = datasets.Dataset.from_dict(rows, features=datasets.Features({
        "t": datasets.Sequence(datasets.Value("int64")), "x": datasets.Sequence(datasets.Value("int16")),
        "y": datasets.Sequence(datasets.Value("int16")), "p": datasets.Sequence(datasets.Value("int8")),
        "label": datasets.ClassLabel(names=["a", "b", "c"])}))
    monkeypatch.setattr(pipelines, "load_event_datasets", lambda *a: {"train": bad, "validation": bad})
    with pytest.raises(ValueError, match=r"'train' split, row 33, field 'x', event 0: x = 5000"):
        _script("run_classification").main(TINY + ["--output_dir", str(tmp_path / "out"), "--tokenizer_name",
                                                   str(_tokenizer_folder(tmp_path))])
    assert not (tmp_path / "out").exists()  # a job refused up front leaves no output folder behind


def _tokenizer_folder(tmp_path):
    from eventlm.tokenization_events import EventTokenizer

    EventTokenizer(sensor_size=(16, 1, 1)).save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_cli_hints_are_in_flag_words(tmp_path, capsys, monkeypatch):
    from eventlm import cli

    monkeypatch.delenv("EVENTLM_DEBUG", raising=False)
    path = _nas(tmp_path / "cochlea.aedat", [0, 2], [1, 2])  # headerless: the format cannot be guessed
    assert cli.main(["stream", str(tmp_path / "m"), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--format nas --reader-options '{\"channels\": 64" in err
    assert cli.main(["stream", str(tmp_path / "m"), str(path), "--format", "nas"]) == 2
    assert "--reader-options '{\"channels\": 64}'" in capsys.readouterr().err


def test_empty_names_are_refused_clearly():
    from eventlm import AutoModelForSequenceClassification
    from eventlm.tokenization_events import EventTokenizer

    with pytest.raises(ValueError, match="empty name"):
        EventTokenizer.from_pretrained("")
    with pytest.raises(FileNotFoundError, match="'' is neither an existing local folder nor a valid Hub repo id"):
        AutoModelForSequenceClassification.from_pretrained("")


@pytest.mark.parametrize("offset,fmt,value,message", [
    (14, "<I", 2**32 - 1, r"header claims 4,294,967,295 bytes but the file holds"),
    (18, "<I", 10**6, r"header.s vtable offset at byte 1000018 lies outside its 2316 bytes"),  # a damaged flatbuffer root offset
    (2338, "<I", 2**31, r"at byte 2,334 the AEDAT4 file claims a packet of 2,147,483,648 bytes"),
])
def test_aedat4_claimed_sizes_are_checked_before_decoding(realdata, tmp_path, offset, fmt, value, message):
    """A damaged size word used to make the aedat package allocate it (4 GiB; an abort under a memory limit)."""
    import struct

    from eventlm.data.readers import read_events
    from eventlm.errors import EventDataError

    data = bytearray((realdata / "tonic_test_data" / "sample.aedat4").read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path = tmp_path / "sizes.aedat4"
    path.write_bytes(bytes(data))
    with pytest.raises(EventDataError, match=message) as info:
        read_events(path)
    assert "sizes.aedat4" in str(info.value) and info.value.path == path


def test_foreign_failures_are_event_data_errors_from_the_original(tmp_path):
    """One family: a library's exception becomes an EventDataError (a ValueError) raised from it."""
    import zipfile

    from eventlm.data.readers import read_events
    from eventlm.errors import EventDataError

    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(EventDataError, match=r"z.npz.*BadZipFile.*copy or download it again") as info:
        read_events(tmp_path / "z.npz")
    assert isinstance(info.value, ValueError) and isinstance(info.value.__cause__, zipfile.BadZipFile)
    assert info.value.path == tmp_path / "z.npz"
    with pytest.raises(FileNotFoundError):  # a missing file stays an OSError
        read_events(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="channels must be a positive integer") as info:  # the caller's mistake
        read_events(tmp_path / "z.npz", format="nas", channels=0)
    assert not isinstance(info.value, EventDataError)


def test_loaders_and_converters_raise_the_same_family(tmp_path):
    """Damaged config.json, tokenizer config and safetensors files, and a bad file in an event folder."""
    from eventlm import EventTokenizer
    from eventlm.data.hub import folder_to_hub_dataset
    from eventlm.errors import EventDataError
    from eventlm.modeling_flax_utils import load_safetensors, read_config_dict

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EventDataError, match="config.json is not valid JSON"):
        read_config_dict(tmp_path)
    (tmp_path / "tok.json").write_bytes(b"\xff\xfe")
    with pytest.raises(EventDataError, match="tok.json: not a valid tokenizer config"):
        EventTokenizer.from_pretrained(tmp_path / "tok.json")
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(EventDataError, match="model.safetensors .* not a readable safetensors"):
        load_safetensors(tmp_path / "model.safetensors")
    src = tmp_path / "events" / "train" / "cat"
    src.mkdir(parents=True)
    (src / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(EventDataError, match="cannot read .*broken.npy"):
        folder_to_hub_dataset(tmp_path / "events", tmp_path / "out")


def test_each_job_command_lists_only_its_own_flags(capsys, caplog):
    from eventlm import cli

    helps = {}
    for command in ("train", "pretrain", "evaluate"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        helps[command] = capsys.readouterr().out
        assert helps[command].startswith(f"usage: eventlm {command} ")
    assert "--ssm_base_lr" in helps["train"] and "--ssm_base_lr" not in helps["evaluate"]
    assert "--recordings" in helps["pretrain"] and "--recordings" not in helps["train"]
    assert "--label_column_name" in helps["evaluate"] and "--label_column_name" not in helps["pretrain"]
    assert len(helps["evaluate"].splitlines()) < 0.6 * len(helps["train"].splitlines())
    with pytest.raises(SystemExit) as exit_info:  # a typo is refused, with this command's own flag as the hint
        cli.main(["evaluate", "--max_eval_sample", "1", "--ssm_base_lr", "1e-3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized argument --max_eval_sample (did you mean --max_eval_samples?)" in err
    from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, parse_args

    with caplog.at_level("WARNING"):  # another command's flag (a shared flag list): accepted, said to be ignored
        _, _, training = parse_args((ModelArguments, DataArguments, TrainingArguments),
                                    ["--ssm_base_lr", "1e-3", "--seed", "3"], command="evaluate")
    assert training.seed == 3 and "eventlm evaluate ignores --ssm_base_lr (flags of eventlm pretrain / eventlm " \
        "train)" in caplog.text


def test_pretrain_reader_hints_name_its_own_flags(tmp_path, capsys, monkeypatch):
    from eventlm import cli

    monkeypatch.delenv("EVENTLM_DEBUG", raising=False)
    path = _nas(tmp_path / "cochlea.aedat", [0, 2], [1, 2])
    assert cli.main(["pretrain", "--recordings", str(path), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--recording_format nas --recording_options '{\"channels\": 64" in err
    assert "--reader-options" not in err
    assert cli.main(["pretrain", "--recordings", str(path), "--recording_format", "nas", "--recording_options",
                     "channels=64", "--output_dir", str(tmp_path / "out")]) == 2
    assert "--recording_options must be a JSON object such as '{\"channels\": 64}', got 'channels=64'" \
        in capsys.readouterr().err


def test_folder_conversion_fails_atomically_or_skips_and_counts(tmp_path):
    """A bad file in an event folder: named, nothing left behind; or skipped with --skip-unreadable and counted."""
    from eventlm import cli
    from eventlm.data.events import EVENT_DTYPE
    from eventlm.data.hub import folder_to_hub_dataset, load_dataset_metadata
    from eventlm.errors import EventDataError

    for cls in ("cat", "dog"):
        (tmp_path / "events" / "train" / cls).mkdir(parents=True)
        for i in range(2):
            ev = np.zeros(4, EVENT_DTYPE)
            ev["t"], ev["x"] = np.arange(4), i
            np.save(tmp_path / "events" / "train" / cls / f"{i}.npy", ev)
    (tmp_path / "events" / "train" / "dog" / "9.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(EventDataError, match=r"cannot read .*9.npy.*skip_unreadable=True"):
        folder_to_hub_dataset(tmp_path / "events", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events"]  # no output, no hidden partial folder
    assert cli.main(["convert-dataset", str(tmp_path / "events"), str(tmp_path / "out"), "--skip-unreadable"]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Unreadable files skipped in the conversion: 1:" in card and "- train/dog/9.npy: not a plain numpy" in card
    assert str(tmp_path) not in card
    meta = load_dataset_metadata(str(tmp_path / "out"))
    assert len(meta["skipped_unreadable"]) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["events", "out"]


def test_a_killed_conversion_leaves_no_partial_folder_behind(tmp_path):
    """The temporary folder of a conversion killed with SIGKILL is removed by the next conversion there."""
    import signal
    import socket

    from eventlm.data.hub import tonic_to_hub_dataset
    from eventlm.data.events import EVENT_DTYPE

    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    partial = tmp_path / ".out.tmp-abc123"
    (partial / "data").mkdir(parents=True)
    (partial / ".eventlm-conversion").write_text(f"{socket.gethostname()} {dead.pid}\n")
    alive = tmp_path / ".out.tmp-def456"  # another conversion, still running: left alone
    alive.mkdir()
    (alive / ".eventlm-conversion").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    ev = np.zeros(3, EVENT_DTYPE)
    ev["t"] = [1, 2, 3]
    tonic_to_hub_dataset({"train": [(ev, 0)]}, tmp_path / "out", sensor_size=(4, 1, 1))
    assert not partial.exists() and alive.exists()
    assert ".eventlm-conversion" not in os.listdir(tmp_path / "out")


def test_event_data_errors_carry_the_file_and_offset(tmp_path):
    from eventlm.data.readers import read_events
    from eventlm.errors import EventDataError

    path = tmp_path / "a.bin"
    path.write_bytes(b"\x00" * 7)  # not whole 5-byte N-MNIST events
    with pytest.raises(EventDataError, match="5 bytes per event") as info:
        read_events(path)
    assert info.value.path == path
    path = tmp_path / "cut.raw"
    path.write_bytes(b"% evt 2.0\n% serial")
    with pytest.raises(EventDataError, match="has no end") as info:
        read_events(path)
    assert info.value.path == path and info.value.offset == 10


def test_unknown_presets_say_what_was_meant(monkeypatch):
    from eventlm import EventTokenizer
    from eventlm.data.augmentations import augmentations_for
    from eventlm.models.spike_driven_transformer.configuration_spike_driven_transformer import (
        SpikeDrivenTransformerConfig)

    with pytest.raises(ValueError, match=r"unknown EventSSM preset 'shdd' \(did you mean 'shd'\?\)"):
        EventSSMConfig.from_preset("shdd")
    with pytest.raises(ValueError, match=r"preset 'dvs-gestur' \(did you mean 'dvs-gesture'\?\)"):
        SpikeDrivenTransformerConfig.from_preset("dvs-gestur")
    with pytest.raises(ValueError, match=r"unknown task 'scc' \(did you mean 'ssc'\?\)"):
        augmentations_for("scc")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"'prophesee-gen5' is not a folder, not a preset \(did you mean 'prophesee-gen"):
        EventTokenizer.from_pretrained("prophesee-gen5", local_files_only=True)
