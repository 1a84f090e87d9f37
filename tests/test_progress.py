"""Progress output: which batches are shown (each shown batch costs the loop a host sync)."""
import io

from utils.progress import Progress, format_time


class Terminal(io.StringIO):
    def isatty(self):
        return True


def shown(progress, total):
    """The 1-based batches ``progress`` shows out of ``total``, updating as the engine does."""
    seen = []
    for done in range(1, total + 1):
        if progress.due(done):
            progress.update(done, 0.0, 0.0, 1.0, 50.0, 90.0)
            seen.append(done)
    progress.finish()
    return seen


def test_plain_output_shows_a_fixed_number_of_lines_and_the_last_batch():
    stream = io.StringIO()
    assert shown(Progress("Training", 25, stream=stream, lines=10), 25) == [2 * k for k in
                                                                          range(1, 13)] + [25]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 13 and lines[-1].startswith("Training (25/25) Data: 0.000s")


def test_the_bar_is_redrawn_at_most_once_per_interval():
    # With an interval no loop reaches, only the first and the last batch are drawn.
    assert shown(Progress("Training", 500, stream=Terminal(), interval=3600), 500) == [1, 500]
    # With none, every batch (the reference's behaviour).
    assert shown(Progress("Training", 5, stream=Terminal(), interval=0), 5) == [1, 2, 3, 4, 5]


def test_disabled_progress_shows_nothing():
    stream = Terminal()
    assert shown(Progress("Testing ", 5, enabled=False, stream=stream), 5) == []
    assert stream.getvalue() == ""


def test_format_time():
    assert format_time(59) == "0:59" and format_time(61) == "1:01"
    assert format_time(3661) == "1:01:01"
