"""The machine's speed, for the nightly benchmark's regression guard.

CPU seconds of one fixed piece of work that does not depend on clientele's code: sorting and
hashing a few million seeded numbers and building a dictionary of them (a working set of a few
hundred MiB, like the run's). The guard divides it by the figure recorded with the budget, so a
machine that runs everything 1.4 times slower (another CPU, a busy neighbour on the host) is not
taken for a regression, and a faster one does not hide one.

    python3 tests/bench/calibrate.py      # prints CPU seconds, the fastest of three rounds
"""

import hashlib
import random
import time


def one_round() -> float:
    started = time.process_time()
    rng = random.Random(42)
    numbers = [rng.random() for _ in range(2_000_000)]
    numbers.sort()
    index = {int(x * 1e12): i for i, x in enumerate(numbers)}
    digest = hashlib.sha256()
    for key in sorted(index)[::7]:
        digest.update(key.to_bytes(8, "little"))
    text = " ".join(f"{x:.9f}" for x in numbers[:500_000])
    digest.update(text.encode())
    if not digest.hexdigest():
        raise SystemExit("calibrate.py: no digest")
    return time.process_time() - started


def main() -> None:
    print(f"{min(one_round() for _ in range(3)):.3f}")


if __name__ == "__main__":
    main()
