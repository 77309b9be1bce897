"""pytest plugin for the thread-leak detector (see tracemux.threadleak)."""
