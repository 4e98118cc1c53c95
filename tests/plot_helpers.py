"""Assertions shared by the plot tests."""

from __future__ import annotations

from matplotlib.axes import Axes


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, "the plot should show a legend"
    return [text.get_text() for text in legend.get_texts()]


def assert_labelled(ax: Axes) -> None:
    assert ax.get_title()
    assert ax.get_xlabel()
    assert ax.get_ylabel()


def overlay(plot, data, **kwargs) -> Axes:
    """Draw the champion, then the challenger on the same Axes (``data``: y, champion, challenger)."""
    ax = plot(data["y"], data["champion"], label="champion", **kwargs)
    returned = plot(data["y"], data["challenger"], ax=ax, label="challenger", **kwargs)
    assert returned is ax
    return ax
