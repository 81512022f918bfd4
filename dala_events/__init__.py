"""DALA events: the event-sourced learner-profile store of the EdPsych Connect DALA platform.

The public API lives in its modules: `app` (`Dala`, one configured store and its use cases,
built from `settings.Settings`), `hlp_module` (LearnerProfile), `persistence_manager` (the
document's functions and DTOs), `database_setup` (init_db and the process default), `audit`,
`store`, `events`.
"""

__version__ = "0.1.0"
