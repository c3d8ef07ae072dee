"""Running trials: the runner that feeds the engines, progress display, and the bench."""
