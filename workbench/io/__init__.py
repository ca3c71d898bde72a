"""The workspace on disk: the folders users may reach (``workspace``), uploaded images (``images``) and
the datasets the app can see (``datasets``)."""
