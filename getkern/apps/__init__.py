"""Applications built on getkern's public API (they import only names the library packages export):

- :mod:`~getkern.apps.demo`: the embedded default, ``getkern demo`` (teacher -> pairs -> GET -> metrics -> profile);
- :mod:`~getkern.apps.guided_demo`: guidance distillation on the same default;
- :mod:`~getkern.apps.study`: GET vs larger ViTs at equal budgets, ``getkern study``;
- :mod:`~getkern.apps.figures`: labelled figures of sample grids (``python -m getkern.apps.figures``).

The names load on first use, and the settings modules (demo_config, study_config) import no torch, so
the commands' parsers stay light.
"""

from __future__ import annotations

from getkern._lazy import lazy_exports

_PUBLIC = {
    "DemoConfig": "getkern.apps.demo_config",
    "run_demo": "getkern.apps.demo",
    "run_guided_demo": "getkern.apps.guided_demo",
    "StudyConfig": "getkern.apps.study_config",
    "run_study": "getkern.apps.study",
}
__all__ = list(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
