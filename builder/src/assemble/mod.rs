//! Assembly of the image as one ordered, deterministic stream of tar entries.
