"""Plotting helpers leave the user's matplotlib set-up alone."""

from __future__ import annotations

import numpy as np


def test_plots_never_switch_the_matplotlib_backend(monkeypatch):
    import matplotlib

    from leopard_reid import viz

    calls = []
    monkeypatch.delenv("DISPLAY", raising=False)  # macOS and Windows have no $DISPLAY
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: calls.append(a))
    fig = viz.plot_scores(np.array([0.9, 0.8]), np.array([0.1, 0.3]), threshold=0.5)
    assert calls == [] and fig.axes
    import matplotlib.pyplot as plt

    plt.close(fig)
