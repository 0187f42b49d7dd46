import numpy as np
import torch

from ssl_bench.data.streams import IndexStream


def test_each_epoch_is_a_permutation_of_the_pool():
    pool = np.arange(100, 110)
    s = IndexStream(pool, 5, seed=1, name="labeled")
    epoch = torch.cat([s.next(), s.next()])
    assert sorted(epoch.tolist()) == list(range(100, 110))
    epoch2 = torch.cat([s.next(), s.next()])
    assert sorted(epoch2.tolist()) == list(range(100, 110))
    assert not torch.equal(epoch, epoch2)


def test_seeded_and_named():
    a = IndexStream(np.arange(50), 8, seed=1, name="labeled")
    b = IndexStream(np.arange(50), 8, seed=1, name="labeled")
    c = IndexStream(np.arange(50), 8, seed=2, name="labeled")
    d = IndexStream(np.arange(50), 8, seed=1, name="unlabeled")
    xa = [a.next() for _ in range(10)]
    assert all(torch.equal(x, b.next()) for x in xa)
    assert not torch.equal(xa[0], c.next()) and not torch.equal(xa[0], d.next())


def test_pool_smaller_than_batch_wraps_epochs():
    s = IndexStream(np.arange(3), 8, seed=0, name="x")
    batch = s.next()
    assert len(batch) == 8
    assert sorted(batch[:3].tolist()) == [0, 1, 2] and sorted(batch[3:6].tolist()) == [0, 1, 2]
    assert s.state_dict() == {"epoch": 2, "offset": 2}


def test_state_restores_position_exactly():
    s = IndexStream(np.arange(37), 5, seed=4, name="u")
    for _ in range(11):
        s.next()
    state = s.state_dict()
    expect = [s.next() for _ in range(9)]
    r = IndexStream(np.arange(37), 5, seed=4, name="u")
    r.load_state_dict(state)
    assert all(torch.equal(e, r.next()) for e in expect)
