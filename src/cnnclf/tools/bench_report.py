"""The benchmark's markdown: the machine, the command, each config's results (the mean over its
seeds, and their spread), and each tutorial's own code beside cnnclf's configs of it."""

import re
from pathlib import Path

from cnnclf.atomic import write_text


def _peaks(peak) -> str:
    if isinstance(peak, dict):
        return ", ".join(f"{value:,.0f} GFLOP/s {precision}" for precision, value in peak.items())
    return f"{peak:,.0f} GFLOP/s float32"  # benchmarks from before bfloat16 was measured


def markdown(bench: dict, command: str) -> str:
    """Markdown: the machine, the command, the results table and the side-by-side comparisons."""
    device = bench["device"]
    gpus = ", ".join(device["gpus"]) or "no GPU"
    quick = [f"--{key} {bench[key]}" for key in ("limit", "epochs") if bench[key]]
    lines = [
        f"Measured {bench['date']} on {device['cpu']} ({device.get('cpu_class', '?')}, {device['cpu_cores']} cores, "
        f"{gpus}); peaks {_peaks(bench['peak_gflops'])} (2048x2048 matmul in TensorFlow, best of 10); % of peak "
        f"is of the peak of each run's precision" + (f"; quick pass ({' '.join(quick)})" if quick else "") + ".",
        "",
        "```",
        command,
        "```",
        "",
        "| config | dataset | precision | epochs | wall s | to first step s | after last epoch s | train img/s "
        "| peak RSS MB | test acc | figure | s to figure | train GFLOP/img | % of peak |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in bench["results"]:
        lines.append(
            f"| {r['config']}{_seed_label(r) if bench['seeds'] > 1 else ''} | {r['dataset']} | "
            f"{r.get('precision') or ''} | "
            f"{_fmt(r['epochs'])} | {_fmt(r['wall_seconds'])} | {_fmt(r['time_to_first_step_seconds'])} | "
            f"{_fmt(r.get('seconds_after_last_epoch'))} | {_fmt(r['train_images_per_second'], 0)} | "
            f"{_fmt(r['peak_rss_mb'], 0)} | {_pct(r['test_accuracy'])} | {_pct(r['figure'])} | "
            f"{_reach(r) if r['figure'] else ''} | "
            f"{_fmt(r['train_gflops_per_image'], 4)} | {_pct(r['fraction_of_peak'], 1)} |"
        )
    lines += _seed_summary(bench["results"])
    pairs = _pairs(bench["results"])
    if pairs:
        lines += [
            "",
            "Time from process start to the tutorial's figure (test accuracy), and peak memory: the "
            "tutorial's own code, cnnclf with the tutorial's settings (configs/seeds), and cnnclf's recipe "
            "on the same architecture (configs/fast):",
            "",
            "| tutorial | figure | own code: s | seeds: s | fast: s | fast vs seeds | fast vs own code "
            "| own code: MB | seeds: MB | fast: MB | fast / own code memory |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for name, own, seed, fast in pairs:
            own = own or {"seconds_to_figure": None, "wall_seconds": None, "peak_rss_mb": None}
            lines.append(
                f"| {name} | {_pct(seed['figure'])} | {_reach(own)} | {_reach(seed)} | {_reach(fast)} | "
                f"{_speedup(seed, fast)} | {_speedup(own, fast)} | {_fmt(own['peak_rss_mb'], 0)} | "
                f"{_fmt(seed['peak_rss_mb'], 0)} | {_fmt(fast['peak_rss_mb'], 0)} | "
                f"{_ratio(fast['peak_rss_mb'], own['peak_rss_mb'])} |"
            )
    return "\n".join(lines) + "\n"


def _seed_label(result) -> str:
    return f" (seed {result['seed']})"


def _seed_summary(results) -> list[str]:
    """Where a config ran with several seeds: its mean test accuracy, their spread, and its times."""
    by_config: dict[str, list] = {}
    for r in results:
        by_config.setdefault(r["config"], []).append(r)
    rows = []
    for config, runs in by_config.items():
        done = [r for r in runs if r["test_accuracy"] is not None]
        if len(runs) < 2 or not done:
            continue
        accuracy = [r["test_accuracy"] for r in done]
        walls = [r["wall_seconds"] for r in done]
        reached = sum(1 for r in done if r["seconds_to_figure"])
        rows.append(
            f"| {config} | {', '.join(str(r['seed']) for r in done)} | {_pct(sum(accuracy) / len(accuracy))} | "
            f"{_pct(min(accuracy))} to {_pct(max(accuracy))} | {_pct(runs[0]['figure'])} | {reached} of {len(done)} | "
            f"{_fmt(sum(walls) / len(walls))} | {_fmt(max(walls))} |"
        )
    if not rows:
        return []
    return [
        "",
        "Over seeds (each row above is one seed):",
        "",
        "| config | seeds | mean test acc | spread | figure | runs reaching it | mean wall s | max wall s |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
        *rows,
    ]


def _pairs(results):
    """(name, tutorial code or None, seeds, fast) for each tutorial run with both of its configs."""
    by_kind = {}
    for r in results:
        kind = "tutorial" if r["config"].startswith("tutorial code") else Path(r["config"]).parent.name
        by_kind[(kind, r["name"])] = r
    return [
        (name, by_kind.get(("tutorial", name)), seed, by_kind[("fast", name)])
        for (kind, name), seed in by_kind.items()
        if kind == "seeds" and ("fast", name) in by_kind
    ]


def write_section(markdown_file: Path, section: str, body: str) -> None:
    """Replace (or append) the section between `<!-- bench:NAME -->` markers; the rest stays."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = markdown_file.read_text() if markdown_file.exists() else "# Benchmarks\n"
    block = f"{start}\n{body}{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + f"\n\n{block}\n"
    write_text(markdown_file, text)


def _reach(result) -> str:
    if result["wall_seconds"] is None:
        return ""
    return (
        _fmt(result["seconds_to_figure"])
        if result["seconds_to_figure"]
        else f"not reached ({result['wall_seconds']:.0f} s run)"
    )


def _speedup(slow, fast) -> str:
    """How many times sooner `fast` reached the figure; against a run that never did, a lower bound."""
    if not fast["seconds_to_figure"] or slow["wall_seconds"] is None:
        return ""
    if slow["seconds_to_figure"]:
        return f"{slow['seconds_to_figure'] / fast['seconds_to_figure']:.2f}x"
    return f">{slow['wall_seconds'] / fast['seconds_to_figure']:.2f}x"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else ""


def _fmt(value, digits=1):
    if value is None:
        return ""
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def _pct(value, digits=2):
    return "" if value is None else f"{100 * value:.{digits}f}%"
