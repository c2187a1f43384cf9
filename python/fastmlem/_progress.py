"""The one place progress bars are made: shown where someone watches them, quiet in logs."""
from __future__ import annotations

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.autonotebook import tqdm as _notebook_or_console_tqdm
from tqdm.std import tqdm as _console_tqdm

_NOTEBOOK = _notebook_or_console_tqdm is not _console_tqdm  # tqdm.auto chose the Jupyter widget


def progress(iterable=None, *, verbose=True, **kwargs):
    """A tqdm progress bar that is drawn only when ``verbose`` and stderr is a terminal.

    Parameters
    ----------
    iterable : iterable, optional. What to wrap (as ``tqdm(iterable)``); omit and give ``total``
        for a bar updated by hand.
    verbose : bool. False: no bar at all.
    **kwargs : passed to ``tqdm`` (``total``, ``desc``, ...).

    Returns
    -------
    tqdm instance. When stderr is a file or a pipe (a batch job on a cluster writes it to a log),
    the bar is disabled the way tqdm provides (``disable=None``), instead of writing one line per
    update; in a Jupyter notebook the widget bar is kept.
    """
    if not verbose:
        disable = True
    else:
        disable = False if _NOTEBOOK else None  # None: tqdm turns the bar off unless stderr is a tty
    return _auto_tqdm(iterable, disable=disable, **kwargs)
