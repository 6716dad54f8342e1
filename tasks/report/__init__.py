"""The run summary, its rendering and its report (markdown and plot)."""
