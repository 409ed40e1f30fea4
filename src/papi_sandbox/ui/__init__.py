"""The operator's dashboard at ``/ui/`` (see :mod:`papi_sandbox.ui.app`)."""
