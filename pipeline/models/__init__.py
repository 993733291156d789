"""Users' own models (python factories, .tflite files, MODELS lists): config schema, inputs, building,
several-models measurement. The sources that use them: pipeline.sources.user."""
