"""The accurate pass: each spoken answer transcribed again in the background, in a low-priority
process (process.py), its text and word timings replacing the live text (passes.py)."""
