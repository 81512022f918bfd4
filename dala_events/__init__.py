"""DALA events: the event-sourced learner-profile store of the EdPsych Connect DALA platform.

The public API lives in its modules: `hlp_module` (LearnerProfile), `persistence_manager`
(the document's functions and DTOs), `database_setup` (init_db), `audit`, `store`, `events`.
"""

__version__ = "0.1.0"
