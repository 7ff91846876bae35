"""The built-in ``motion-demo`` model's own code: its data generator, its fixed front end and its recipe.

* :mod:`model.demo.render` renders the labeled synthetic action videos (numpy + cv2 only;
  ``python -m model.demo.render``); the ``synthetic://`` source wraps it.
* :mod:`model.demo.motion_prior` and :mod:`model.demo.turn_prior` write the fixed front-end layers
  (built from :mod:`model.demo.circuits`) that training keeps as set.
* :mod:`model.demo.dataset` writes the training data, a folder of labeled clips with domain randomization
  (``python -m model.demo.dataset``); ``python -m model.finetune --prior motion-demo`` trains on it
  (:mod:`model.demo.prior` installs the fixed front end): docs/DEMO_MODEL.md has the one command that
  produced ``model/weights/motion-demo``.
* :mod:`model.demo.heldout` holds two renderers written apart from the training renderer (other drawing
  code, other looks) that score how the model generalizes; training never uses them.
"""
