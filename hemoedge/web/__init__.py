"""The offline PWA's build (`hemoedge webapp build`) and loopback server (`hemoedge webapp serve`)."""
