"""The built-in ``motion-demo`` model's own code: its data generator, its fixed front end and its recipe.

* :mod:`model.demo.render` renders the labeled synthetic action videos (numpy + cv2 only;
  ``python -m model.demo.render``); the ``synthetic://`` source wraps it.
* :mod:`model.demo.motion_prior` and :mod:`model.demo.turn_prior` write the fixed front-end layers
  (built from :mod:`model.demo.circuits`) that training keeps as set.
* :mod:`model.demo.data` turns rendered clips into training batches; :mod:`model.demo.train` is the
  recipe (``python -m model.demo.train``) that produced ``model/weights/motion-demo``.
"""
