"""Plain-text tables for the terminal: columns aligned, numbers to the right."""


def aligned(header: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in header]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_is_number(row[i]) for row in cells[1:] if row[i]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric)).rstrip() for row in cells
    )


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%"))
    except ValueError:
        return False
    return True


def short(value):
    """A number as a table shows it: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else value
