"""One cell of the benchmark's tables, as bench/report.py and the step reports print it."""


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def num(value) -> str:
    """Ratios and limits: three significant digits, so that 0.0041 does not print as 0.00."""
    return "-" if value is None else f"{value:.3g}"
