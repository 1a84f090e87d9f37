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


def test_the_bar_never_hides_the_cursor():
    """A run ended by an exception or a second Ctrl-C never reaches finish(): a hidden cursor
    would stay hidden in the user's terminal."""
    stream = Terminal()
    progress = Progress("Training", 5, stream=stream, interval=0)
    progress.update(1, 0.0, 0.0, 1.0, 50.0, 90.0)  # ... and the run dies here
    assert "\x1b[?25l" not in stream.getvalue() and "(1/5)" in stream.getvalue()


def test_the_eta_of_a_resumed_pass_counts_only_the_batches_it_ran(monkeypatch):
    import utils.progress
    clock = iter([100.0, 110.0])  # start, then 10 s later
    monkeypatch.setattr(utils.progress.time, "time", lambda: next(clock))
    stream = io.StringIO()
    progress = Progress("Training", 100, stream=stream, lines=100, first=80)
    progress.update(90, 0.0, 0.0, 1.0, 50.0, 90.0)  # 10 batches in 10 s, 10 left: 10 s
    assert "ETA: 0:10" in stream.getvalue()


def test_rates_keep_three_digits_and_counts_their_noun():
    from utils.progress import format_rate, plural
    assert [format_rate(r) for r in (95012.4, 563.4, 41.74, 0.834)] == ["95012", "563", "41.7",
                                                                         "0.83"]
    assert plural(1, "epoch") == "1 epoch" and plural(3, "epoch") == "3 epochs"
