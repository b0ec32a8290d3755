import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def obama_path(tmp_path_factory):
    """obama.txt through the corpus look-up, copied into a temporary folder (never into the repo)."""
    import bucket_io
    target = str(tmp_path_factory.mktemp("corpus") / "obama.txt")
    try:
        return bucket_io.find_corpus(None, target=target, download=False)
    except bucket_io.CorpusError as err:
        pytest.skip("obama.txt is not available: %s" % err)


@pytest.fixture(scope="session")
def small_corpus(obama_path, tmp_path_factory):
    """The first 300 lines of obama.txt."""
    path = tmp_path_factory.mktemp("small") / "small.txt"
    with open(obama_path, encoding="utf-8") as f:
        lines = f.read().split("\n")[:300]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _bf16_reason():
    import device
    return device.bf16_unavailable_reason()


# bfloat16 runs only on CPUs with AVX-512 bf16; the suite runs on machines with and without it
needs_bf16 = pytest.mark.skipif(_bf16_reason() is not None, reason="--bf16 cannot run here: %s" % _bf16_reason())
