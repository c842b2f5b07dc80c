"""Training machinery shared by pretraining and fine-tuning."""
