"""Build the API reference (HTML, pdoc) from the docstrings; fail on any pdoc warning.

    python docs/build_api.py [OUT]        # default docs/api (git-ignored); make docs

Every public module of the library: ``fsjax.nn``, ``fsjax.linen``, ``fsjax.models``,
``fsjax.ops``, ``fsjax.optim``, ``fsjax.prune``, ``fsjax.quant``, ``fsjax.deploy``,
``fsjax.export``, ``fsjax.report``, ``fsjax.data``, ``fsjax.spec``, ``fsjax.kinds``. Docstrings
are reStructuredText (Sphinx roles such as :func:`fsjax.ops.fs_kernel` become links).
"""

import os
import sys
import warnings

MODULES = ["fsjax.nn", "fsjax.linen", "fsjax.models", "fsjax.ops", "fsjax.optim",
           "fsjax.prune", "fsjax.quant", "fsjax.deploy", "fsjax.export", "fsjax.report",
           "fsjax.data", "fsjax.spec", "fsjax.kinds"]


def main(argv=None) -> int:
    import pdoc
    import pdoc.render

    out = (argv or sys.argv[1:] or [os.path.join(os.path.dirname(__file__), "api")])[0]
    pdoc.render.configure(docformat="restructuredtext", show_source=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*MODULES, output_directory=__import__("pathlib").Path(out))
    mine = [w for w in caught if "pdoc" in w.filename]
    for w in mine:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"API reference: {len(os.listdir(out))} entries in {out}"
          + (f"; {len(mine)} pdoc warning(s)" if mine else ", no warnings"))
    return 1 if mine else 0


if __name__ == "__main__":
    raise SystemExit(main())
