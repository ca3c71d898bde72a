"""Training for SFTok: data, the teacher, stages 1-3, the generator, EMA, schedules and resume."""
