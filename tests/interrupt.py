"""A killed run, for resume tests: a generator whose decoder dies on its n-th call."""

import pytest


def dies_on_decode(monkeypatch, gen, call: int) -> None:
    """From now on, the ``call``-th call of ``gen.decode`` raises KeyboardInterrupt."""
    decode, calls = gen.decode, {"n": 0}

    def dying(latents):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return decode(latents)

    monkeypatch.setattr(gen, "decode", dying)


def killed(monkeypatch, gen, call: int, run) -> None:
    """Run ``run()`` with a decoder that dies on its ``call``-th call; the decoder is
    restored afterwards."""
    with monkeypatch.context() as m:
        dies_on_decode(m, gen, call)
        with pytest.raises(KeyboardInterrupt):
            run()
