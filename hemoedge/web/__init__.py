"""The offline PWA: its build (`hemoedge webapp build`) and server (`hemoedge webapp serve`)."""
