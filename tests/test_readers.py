"""eventlm.data.readers: every real recording, independent decodes, synthetic round-trips, bad input."""

import shutil

import numpy as np
import pytest

from eventlm.data.events import EVENT_DTYPE
from eventlm.data.readers import KNOWN_FORMATS, guess_format, read_events

# file, read_events options, events (SOURCES.md), sensor
REAL = [
    ("tonic_test_data/sample_nmnist.bin", {}, 4_325, (34, 34, 2)),
    ("tonic_test_data/sample.aedat4", {}, 111_954, (320, 240, 2)),
    ("tonic_test_data/sample_stmnist.mat", {}, 2_346, (10, 10, 2)),
    ("expelliarmus/evt2_sample.raw", {}, 539_481, (640, 480, 2)),
    ("aerzip_nas/130Hz_mono_64ch_ONOFF_addr2b_ts02.aedat", dict(format="nas", channels=64), 331_949, (64, 1, 2)),
    ("aerzip_nas/sound_mono_32ch_ONOFF_addr2b_ts02.aedat", dict(format="nas", channels=32), 49_864, (32, 1, 2)),
]
NAS64 = "aerzip_nas/130Hz_mono_64ch_ONOFF_addr2b_ts02.aedat"


def _fields(events):
    return {k: events[k].astype(np.int64) for k in ("t", "x", "y", "p")}


def assert_same(stream, t, x, y, p):
    e = stream.events
    for name, got, want in (("t", e["t"], t), ("x", e["x"], x), ("y", e["y"], y), ("p", e["p"], p)):
        np.testing.assert_array_equal(got.astype(np.int64), np.asarray(want, np.int64), err_msg=name)


# --------------------------------------------------------------------------------------------
# Real recordings
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,options,count,sensor", REAL, ids=[r[0].split("/")[-1] for r in REAL])
def test_real_file_reads_to_its_count(realdata, name, options, count, sensor):
    s = read_events(realdata / name, **options)
    e = s.events
    assert len(s) == count and s.sensor_size == sensor
    assert e.dtype == EVENT_DTYPE
    assert (np.diff(e["t"]) >= 0).all() and e["t"].min() >= 0
    for field, hi in (("x", sensor[0]), ("y", sensor[1]), ("p", sensor[2])):
        assert 0 <= e[field].min() and e[field].max() < hi, field
    assert len(np.unique(e["p"])) == 2  # both polarities present in every file


def test_header_only_aedat_is_a_documented_empty_stream(realdata):
    s = read_events(realdata / "tonic_test_data/sample_aedat_header.aedat")
    assert len(s) == 0 and s.events.dtype == EVENT_DTYPE
    assert s.sensor_size == (346, 260, 2)  # "# AEChip: ...Davis346red"


def test_nas_matches_independent_decode(realdata):
    raw = np.fromfile(realdata / NAS64, dtype=[("addr", ">u2"), ("ts", ">u4")])
    addr, ts = raw["addr"].astype(np.int64), raw["ts"].astype(np.int64)
    s = read_events(realdata / NAS64, format="nas", channels=64, address_bytes=2, tick_us=0.2)
    # mono ON/OFF: address = 2*channel + (0 ON | 1 OFF); 5 ticks of 0.2 µs per µs
    assert_same(s, ts // 5, addr // 2, np.zeros_like(addr), np.where(addr % 2 == 0, 1, 0))
    assert s.events["t"][-1] == 496_680  # 0.497 s, as SOURCES.md says


def test_nmnist_matches_hand_decode(realdata):
    b = np.fromfile(realdata / "tonic_test_data/sample_nmnist.bin", dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    # 40-bit event: x (8) | y (8) | p (1) t[22:16] (7) | t[15:8] | t[7:0]; y == 240 marks a timer overflow
    t = (b[:, 2] & 127) << 16 | b[:, 3] << 8 | b[:, 4]
    overflow = b[:, 1] == 240
    t = t + np.cumsum(overflow) * (1 << 13)  # tonic's convention for the overflow marker
    keep = ~overflow
    s = read_events(realdata / "tonic_test_data/sample_nmnist.bin")
    assert_same(s, t[keep], b[keep, 0], b[keep, 1], b[keep, 2] >> 7)
    first = bytes(np.fromfile(realdata / "tonic_test_data/sample_nmnist.bin", dtype=np.uint8)[:5])
    assert first == bytes([0x07, 0x0F, 0x80, 0x02, 0x8E])  # x=7, y=15, p=1, t=0x028E=654
    assert tuple(s.events[0]) == (654, 7, 15, 1)


def test_stmnist_matches_loop_decode(realdata):
    import scipy.io

    st = scipy.io.loadmat(realdata / "tonic_test_data/sample_stmnist.mat")["spiketrain"]
    want = []
    for j in range(st.shape[1]):
        for taxel in np.flatnonzero(st[:100, j]):
            want.append((st[100, j] * 1e6, taxel % 10, taxel // 10, int(st[taxel, j] > 0)))
    want = np.array(want)
    s = read_events(realdata / "tonic_test_data/sample_stmnist.mat")
    e = s.events
    assert np.all((want[:, 0] - e["t"] >= -1e-3) & (want[:, 0] - e["t"] < 1))  # µs rounded down
    assert_same(s, e["t"], want[:, 1], want[:, 2], want[:, 3])
    assert (e["p"] == 1).sum() == 1_601 and (e["p"] == 0).sum() == 745


def test_aedat4_matches_tonic(realdata):
    import tonic

    ref = tonic.io.read_aedat4(str(realdata / "tonic_test_data/sample.aedat4"))
    s = read_events(realdata / "tonic_test_data/sample.aedat4")
    assert_same(s, ref["t"].astype(np.int64), ref["x"], ref["y"], ref["p"])


def _decode_evt2(body: bytes):
    """Independent EVT 2.0 decode: 32-bit LE words, type in bits 28-31 (0 CD_OFF, 1 CD_ON, 8 TIME_HIGH)."""
    w = np.frombuffer(body, "<u4").astype(np.int64)
    typ = w >> 28
    last_high = np.maximum.accumulate(np.where(typ == 8, np.arange(len(w)), -1))
    high = np.where(last_high >= 0, w[np.maximum(last_high, 0)] & 0x0FFFFFFF, 0)
    cd = typ <= 1
    t = (high << 6 | (w >> 22) & 0x3F)[cd]  # µs = time_high (28 bits) · 64 + 6-bit low part
    return t, ((w >> 11) & 0x7FF)[cd], (w & 0x7FF)[cd], typ[cd]


def test_evt2_matches_independent_decode(realdata):
    path = realdata / "expelliarmus/evt2_sample.raw"
    data = path.read_bytes()
    body = data[data.index(b"% evt 2.0\n") + len(b"% evt 2.0\n"):]
    t, x, y, p = _decode_evt2(body)
    order = np.argsort(t, kind="stable")
    assert_same(read_events(path), t[order], x[order], y[order], p[order])


def test_guess_format_on_real_files(realdata):
    assert guess_format(realdata / "expelliarmus/evt2_sample.raw") == "evt2"
    assert guess_format(realdata / "tonic_test_data/sample_aedat_header.aedat") == "aedat"
    with pytest.raises(ValueError, match="format='nas'"):
        guess_format(realdata / NAS64)


# --------------------------------------------------------------------------------------------
# Synthetic round-trips (formats written here, read back)
# --------------------------------------------------------------------------------------------

def _random_events(rng, n, W, H, P, t_max=10**6):
    return (np.sort(rng.integers(0, t_max, n)), rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, P, n))


@pytest.mark.parametrize("stereo,address_bytes,tick_us,on_off", [
    (False, 2, 0.2, True), (True, 4, 1, True), (True, 2, 0.5, False)])
def test_nas_round_trip(tmp_path, stereo, address_bytes, tick_us, on_off):
    rng = np.random.default_rng(1)
    C, n = 32, 500
    ticks = np.sort(rng.integers(0, 2**32, n)).astype(np.int64)
    ch, ear, pol = rng.integers(0, C, n), rng.integers(0, 2 if stereo else 1, n), rng.integers(0, 2, n)
    addr = ear * C * 2 + ch * 2 + (1 - pol) if on_off else ear * C + ch  # pol 1 = ON = bit 0 clear
    raw = np.empty(n, [("addr", f">u{address_bytes}"), ("ts", ">u4")])
    raw["addr"], raw["ts"] = addr, ticks
    path = tmp_path / "rec.aedat"
    raw.tofile(path)
    s = read_events(path, format="nas", channels=C, address_bytes=address_bytes, tick_us=tick_us,
                    stereo=stereo, on_off=on_off)
    num, den = {0.2: (1, 5), 1: (1, 1), 0.5: (1, 2)}[tick_us]
    want_t = ticks * num // den  # µs, rounded down
    assert_same(s, want_t, ch, ear, pol if on_off else 0 * pol)
    assert s.sensor_size == (C, 2 if stereo else 1, 2 if on_off else 1)


def test_nas_jaer_header_and_timestamp_wrap(tmp_path):
    ticks = np.array([2**32 - 10, 2**32 - 1, 5, 7], np.int64)  # the 32-bit counter wraps once
    raw = np.empty(4, [("addr", ">u4"), ("ts", ">u4")])
    raw["addr"], raw["ts"] = [0, 3, 5, 126], ticks
    path = tmp_path / "jaer_nas.aedat"
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.cochlea.CochleaAMS1c\r\n")
        raw.tofile(f)
    with pytest.raises(ValueError, match="CochleaAMS1c.*format='nas'"):
        read_events(path)  # a cochlea chip is not a camera: the error says to use format='nas'
    s = read_events(path, format="nas", channels=64, address_bytes=4, tick_us=1)
    assert_same(s, [2**32 - 10, 2**32 - 1, 2**32 + 5, 2**32 + 7], [0, 1, 2, 63], [0] * 4, [1, 0, 0, 1])


def test_nmnist_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    t, x, y, p = _random_events(rng, 300, 34, 34, 2, t_max=2**23)
    b = np.stack([x, y, p << 7 | t >> 16, (t >> 8) & 255, t & 255], 1).astype(np.uint8)
    b.tofile(tmp_path / "digit.bin")
    assert_same(read_events(tmp_path / "digit.bin"), t, x, y, p)


def test_stmnist_round_trip(tmp_path):
    import scipy.io

    rng = np.random.default_rng(3)
    n = 200
    taxel = rng.integers(0, 100, n)
    seconds = np.sort(rng.integers(0, 2_000_000, n)) / 1e6 + 0.2
    st = np.zeros((101, n))
    st[taxel, np.arange(n)] = rng.choice([-1.0, 1.0], n)
    st[100] = seconds
    scipy.io.savemat(tmp_path / "s.mat", {"spiketrain": st})
    s = read_events(tmp_path / "s.mat")
    assert_same(s, np.rint(seconds * 1e6), taxel % 10, taxel // 10, st[taxel, np.arange(n)] > 0)


@pytest.mark.parametrize("encoding,plugin,sensor", [
    ("evt2", "hal_plugin_gen3_fx3", (640, 480, 2)), ("dat", None, None)])
def test_prophesee_round_trip_through_expelliarmus(tmp_path, encoding, plugin, sensor):
    import expelliarmus

    rng = np.random.default_rng(4)
    t, x, y, p = _random_events(rng, 2_000, 640, 480, 2)
    arr = np.zeros(len(t), [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    arr["t"], arr["x"], arr["y"], arr["p"] = t, x, y, p
    path = tmp_path / f"rec.{'dat' if encoding == 'dat' else 'raw'}"
    expelliarmus.Wizard(encoding=encoding).save(str(path), arr)
    assert guess_format(path) == encoding
    s = read_events(path)
    assert_same(s, t, x, y, p)
    if plugin:
        assert plugin in path.read_text("latin-1")[:400] and s.sensor_size == sensor
    else:  # expelliarmus' DAT header names no size: the smallest sensor holding the events
        assert s.sensor_size == (x.max() + 1, y.max() + 1, 2)
        assert read_events(path, sensor_size=(1280, 720, 2)).sensor_size == (1280, 720, 2)


def _encode_evt3(t, x, y, p):
    """EVT 3.0 by the Prophesee spec: TIME_HIGH (type 8) / TIME_LOW (6) / ADDR_Y (0) when they change."""
    words, last = [], (None, None, None)
    for ti, xi, yi, pi in zip(t, x, y, p):
        high, low = (ti >> 12) & 0xFFF, ti & 0xFFF
        if high != last[0]:
            words.append(0x8000 | high)
        if low != last[1] or high != last[0]:
            words.append(0x6000 | low)
        if yi != last[2]:
            words.append(yi)
        words.append(0x2000 | pi << 11 | xi)  # ADDR_X: x and polarity
        last = (high, low, yi)
    return np.array(words, "<u2").tobytes()


def test_evt3_spec_stream_with_vectors_and_time_wrap(tmp_path):
    rng = np.random.default_rng(9)
    t, x, y, p = _random_events(rng, 3_000, 1280, 720, 2, t_max=3 * 10**7)  # past the 24-bit wrap (16.8 s)
    t_end = int(t[-1]) + 5
    # vectors at t_end, y=7: VECT_BASE_X x=100 ON; VECT_12 bits 0,3,11; VECT_8 bit 2 (x = 100+12+2)
    tail = [0x8000 | (t_end >> 12) & 0xFFF, 0x6000 | t_end & 0xFFF, 7, 0x3000 | 1 << 11 | 100,
            0x4000 | 0b100000001001, 0x5000 | 0b100, 0xA000, 0x2000 | 5]  # + a trigger word, one OFF event
    path = tmp_path / "rec.raw"
    path.write_bytes(b"% evt 3.0\n% plugin_name hal_plugin_gen41_evk3\n" + _encode_evt3(t, x, y, p)
                     + np.array(tail, "<u2").tobytes())
    s = read_events(path)
    assert s.sensor_size == (1280, 720, 2)
    n = np.r_[t, [t_end] * 5]
    assert_same(s, n, np.r_[x, 100, 103, 111, 114, 5], np.r_[y, [7] * 5], np.r_[p, 1, 1, 1, 1, 0])
    path.write_bytes(b"% evt 3.0\n" + np.array([0x8001, 0x9000], "<u2").tobytes())
    with pytest.raises(ValueError, match="type 9"):
        read_events(path)


def test_dat_written_by_spec(tmp_path):
    rng = np.random.default_rng(10)
    t, x, y, p = _random_events(rng, 1_000, 304, 240, 2, t_max=2**33)  # 32-bit timestamps wrap
    ev = np.empty(len(t), [("ts", "<u4"), ("data", "<u4")])
    ev["ts"], ev["data"] = t & 0xFFFFFFFF, x | y << 14 | p << 28  # x bits 0-13, y 14-27, p 28-31
    path = tmp_path / "cars.dat"
    path.write_bytes(b"% Data file containing CD events\n% Version 2\n% Width 304\n% Height 240\n"
                     + bytes([0, 8]) + ev.tobytes())
    s = read_events(path)
    assert s.sensor_size == (304, 240, 2)
    assert_same(s, t, x, y, p)


def test_prophesee_geometry_header_wins(tmp_path):
    import expelliarmus

    arr = np.zeros(3, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    arr["t"], arr["x"], arr["y"], arr["p"] = [1, 2, 3], [5, 6, 7], [1, 2, 3], [0, 1, 0]
    src = tmp_path / "a.raw"
    expelliarmus.Wizard(encoding="evt3").save(str(src), arr)
    data = src.read_bytes()
    (tmp_path / "b.raw").write_bytes(b"% geometry 320x320\n" + data)
    assert read_events(tmp_path / "b.raw").sensor_size == (320, 320, 2)


def _aedat2(path, chip, addr, ts):
    raw = np.empty(len(addr), [("addr", ">u4"), ("ts", ">u4")])
    raw["addr"], raw["ts"] = addr, ts
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT2.0\r\n# Data format is int32 address, int32 timestamp\r\n")
        f.write(f"# AEChip: {chip}\r\n".encode())
        raw.tofile(f)


def test_aedat2_dvs128_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    t, x, y, p = _random_events(rng, 400, 128, 128, 2)
    # jAER DVS128: x mirrored in bits 1-7, y in bits 8-14, bit 0 = 1 - polarity; bit 15 = sync event
    addr = (127 - x) << 1 | y << 8 | (1 - p)
    special = np.array([1 << 15 | 3], np.int64)
    _aedat2(tmp_path / "d.aedat", "ch.unizh.ini.jaer.chip.retina.DVS128", np.r_[addr, special], np.r_[t, t[-1]])
    s = read_events(tmp_path / "d.aedat")
    assert s.sensor_size == (128, 128, 2)
    assert_same(s, t, x, y, p)


def test_aedat2_davis346_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    t, x, y, p = _random_events(rng, 400, 346, 260, 2)
    # jAER DAVIS: y bits 22-30, mirrored x bits 12-21, polarity bit 11; bit 31 APS/IMU, bit 10 trigger
    addr = y << 22 | (345 - x) << 12 | p << 11
    extra = np.array([1 << 31 | 5 << 22 | 7 << 12, 1 << 10 | 2], np.int64)  # an APS sample, a trigger
    _aedat2(tmp_path / "d.aedat", "eu.seebetter.ini.chips.davis.Davis346B", np.r_[addr, extra], np.r_[t, t[-1], t[-1]])
    s = read_events(tmp_path / "d.aedat")
    assert s.sensor_size == (346, 260, 2)
    assert_same(s, t, x, y, p)


def test_aedat3_polarity_packets_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    t, x, y, p = _random_events(rng, 300, 128, 128, 2, t_max=2**31)
    hdr = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                    ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])

    def packet(kind, events, overflow=0, size=8):
        h = np.zeros(1, hdr)
        h["type"], h["size"], h["ts_overflow"], h["capacity"] = kind, size, overflow, len(events) // size
        return h.tobytes() + events

    def polarity(t, x, y, p, valid):
        ev = np.empty(len(t), [("data", "<u4"), ("ts", "<i4")])
        ev["data"], ev["ts"] = x << 17 | y << 2 | p << 1 | valid, t
        return ev.tobytes()

    body = packet(1, polarity(t[:150], x[:150], y[:150], p[:150], 1))
    body += packet(2, b"\x00" * 16, size=16)  # a special-event packet: skipped
    body += packet(1, polarity(t[150:], x[150:], y[150:], p[150:], 1))
    body += packet(1, polarity(t[:5], x[:5], y[:5], p[:5], 0))  # invalid events: dropped
    body += packet(1, polarity(np.array([3]), np.array([1]), np.array([2]), np.array([1]), 1), overflow=1)
    path = tmp_path / "g.aedat"
    path.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n" + body)
    s = read_events(path)
    assert s.sensor_size == (128, 128, 2)
    assert_same(s, np.r_[t, 2**31 + 3], np.r_[x, 1], np.r_[y, 2], np.r_[p, 1])
    path.write_bytes(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n" + body[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_events(path)


def test_tables_round_trip_and_sort(tmp_path):
    rng = np.random.default_rng(8)
    n = 100
    t = rng.integers(0, 50, n)  # unsorted, with ties: the reader sorts stably
    x, y, p = rng.integers(0, 20, n), rng.integers(0, 10, n), rng.integers(0, 2, n)
    order = np.argsort(t, kind="stable")
    tonic_like = np.zeros(n, [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
    tonic_like["x"], tonic_like["y"], tonic_like["t"], tonic_like["p"] = x, y, t, p
    np.save(tmp_path / "e.npy", tonic_like)
    np.savez(tmp_path / "e.npz", t=t, x=x, y=y, p=p)
    np.savetxt(tmp_path / "e.csv", np.stack([t, x, y, p], 1), fmt="%d", delimiter=",", header="t,x,y,p", comments="")
    for name in ("e.npy", "e.npz", "e.csv"):
        s = read_events(tmp_path / name)
        assert_same(s, t[order], x[order], y[order], p[order])
        assert s.sensor_size == (x.max() + 1, y.max() + 1, 2)
    assert read_events(tmp_path / "e.csv", sensor_size=(20, 10, 2)).sensor_size == (20, 10, 2)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.raw"):
        read_events(tmp_path / "nope.raw")
    with pytest.raises(ValueError, match="not a file"):
        read_events(tmp_path)
    with pytest.raises(TypeError, match="path"):
        read_events(12)


def test_unknown_extension_and_format(tmp_path):
    (tmp_path / "x.xyz").write_bytes(b"abc")
    with pytest.raises(ValueError, match="'.xyz'.*nmnist.*nas"):
        read_events(tmp_path / "x.xyz")
    with pytest.raises(ValueError, match="unknown format 'hdf5'.*evt3"):
        read_events(tmp_path / "x.xyz", format="hdf5")
    assert set(KNOWN_FORMATS) >= {"nmnist", "aedat4", "evt2", "evt3", "dat", "nas", "stmnist", "aedat"}


def test_headerless_aedat_needs_format_nas(tmp_path):
    np.zeros(4, [("addr", ">u2"), ("ts", ">u4")]).tofile(tmp_path / "a.aedat")
    with pytest.raises(ValueError, match="format='nas'.*channels"):
        read_events(tmp_path / "a.aedat")


def test_wrong_options(tmp_path):
    raw = np.zeros(5, [("addr", ">u2"), ("ts", ">u4")])  # 30 bytes: not whole 8-byte events
    raw["addr"] = [0, 1, 100, 2, 3]
    raw.tofile(tmp_path / "a.aedat")
    with pytest.raises(TypeError, match=r"\['channels'\].*sensor_size"):
        read_events(tmp_path / "a.aedat", format="aedat", channels=64)
    with pytest.raises(TypeError, match="bogus"):
        read_events(tmp_path / "a.aedat", format="nas", channels=64, bogus=1)
    with pytest.raises(ValueError, match="needs channels"):
        read_events(tmp_path / "a.aedat", format="nas")
    with pytest.raises(ValueError, match="address 100.*channels=32"):
        read_events(tmp_path / "a.aedat", format="nas", channels=32)
    with pytest.raises(ValueError, match="address_bytes must be 2 or 4, got 3"):
        read_events(tmp_path / "a.aedat", format="nas", channels=64, address_bytes=3)
    with pytest.raises(ValueError, match="tick_us"):
        read_events(tmp_path / "a.aedat", format="nas", channels=64, tick_us=-1)
    with pytest.raises(ValueError, match="not a whole number of 8-byte"):
        read_events(tmp_path / "a.aedat", format="nas", channels=64, address_bytes=4)
    with pytest.raises(ValueError, match="sensor_size"):
        read_events(tmp_path / "a.aedat", format="aedat", sensor_size=(3, 4))


def test_truncated_and_corrupt_real_files(realdata, tmp_path):
    def cut(name, keep, suffix=None):
        src = realdata / name
        dst = tmp_path / (src.stem + (suffix or src.suffix))
        dst.write_bytes(src.read_bytes()[:keep])
        return dst

    with pytest.raises(ValueError, match="5 bytes per event"):
        read_events(cut("tonic_test_data/sample_nmnist.bin", 5 * 100 + 3))
    with pytest.raises(ValueError, match="truncated"):
        read_events(cut("expelliarmus/evt2_sample.raw", 1001))
    with pytest.raises(ValueError, match="AEDAT4 header puts the data table at byte 945,243.*truncated"):
        read_events(cut("tonic_test_data/sample.aedat4", 400_000))
    with pytest.raises(ValueError, match="truncated"):
        read_events(cut(NAS64, 6 * 1000 + 4), format="nas", channels=64)
    with pytest.raises(ValueError, match="not a readable MATLAB"):
        read_events(cut("tonic_test_data/sample_stmnist.mat", 100))
    garbage = tmp_path / "garbage.raw"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 1000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="% evt 2.0"):
        read_events(garbage)
    # a header that says EVT3 read as EVT2
    shutil.copy(realdata / "expelliarmus/evt2_sample.raw", tmp_path / "e.raw")
    with pytest.raises(ValueError, match="header says evt2"):
        read_events(tmp_path / "e.raw", format="evt3")


def test_negative_timestamps_and_out_of_sensor_events(tmp_path):
    ev = np.zeros(3, EVENT_DTYPE)
    ev["t"], ev["x"] = [5, -1, 7], [1, 2, 3]
    np.save(tmp_path / "neg.npy", ev)
    with pytest.raises(ValueError, match="'t' has value -1"):
        read_events(tmp_path / "neg.npy")
    ev["t"] = [5, 6, 7]
    np.save(tmp_path / "ok.npy", ev)
    with pytest.raises(ValueError, match="'x' has value 3.*must be < 3"):
        read_events(tmp_path / "ok.npy", sensor_size=(3, 1, 2))
    np.save(tmp_path / "plain.npy", np.arange(6).reshape(3, 2))
    with pytest.raises(ValueError, match="structured array"):
        read_events(tmp_path / "plain.npy")
    np.save(tmp_path / "obj.npy", np.array([{"t": 1}], dtype=object))  # np.save pickles object arrays by default
    with pytest.raises(ValueError, match="not a plain numpy"):
        read_events(tmp_path / "obj.npy")  # never unpickled


def test_stmnist_bad_values(tmp_path):
    import scipy.io

    st = np.zeros((101, 3))
    st[4, :] = [1, 2, -1]
    st[100] = [0.1, 0.2, 0.3]
    scipy.io.savemat(tmp_path / "bad.mat", {"spiketrain": st})
    with pytest.raises(ValueError, match="taxel 4 of column 1 holds 2"):
        read_events(tmp_path / "bad.mat")
    scipy.io.savemat(tmp_path / "none.mat", {"other": st})
    with pytest.raises(ValueError, match="no 'spiketrain'"):
        read_events(tmp_path / "none.mat")
