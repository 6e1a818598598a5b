# A tag for `tagwatch sim demo`, run under the real MicroPython interpreter: it walks a route
# and writes each signed frame it would uplink as a hex line on stdout.
# Usage: micropython sim/mp_demo_tag.py DEVICE KEY_HEX T0 FRAMES
import sys

from firmware import frame as fr

ROUTE = (
    (50.71617, -1.87535),  # Bournemouth pier
    (50.71945, -1.87820),  # the Square
    (50.72230, -1.86370),  # Lansdowne
    (50.72480, -1.89900),  # Westbourne
    (50.71490, -1.98720),  # Poole quay
)


def main(device, key, t0, count):
    for n in range(count):
        lat0, lon0 = ROUTE[n % len(ROUTE)]
        lat1, lon1 = ROUTE[(n + 1) % len(ROUTE)]
        recs = []
        for i in range(5):
            lat = lat0 + (lat1 - lat0) * i / 5
            lon = lon0 + (lon1 - lon0) * i / 5
            recs.append(
                fr.Record(
                    fr.FIX,
                    dt=(4 - i) * 60,
                    lat_e7=int(lat * 1e7),
                    lon_e7=int(lon * 1e7),
                    acc_dm=45,
                    fix_type=fr.FIX_3D,
                    source=fr.SOURCE_GNSS,
                    sats=9,
                    speed_cms=130,
                    course_cd=9000,
                    hdop_d=9,
                )
            )
        flags = fr.FLAG_TIME_VALID
        if n == count - 1:
            recs.append(fr.Record(fr.TAMPER, dt=0, sensor=fr.SENSOR_STRAP, state=fr.OPEN))
            flags |= fr.FLAG_URGENT
        f = fr.Frame(fr.TAG_DATA, device, 1, n, t0 + n * 300, recs, flags)
        print(fr.encode(f, key).hex())


main(int(sys.argv[1]), bytes.fromhex(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
