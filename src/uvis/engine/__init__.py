"""The training engine every uvis training runs on.

* :mod:`~uvis.engine.trainer`: the loop (:class:`Trainer`) and its hooks: loss windows,
  periodic checkpoints and calls, SIGTERM;
* :mod:`~uvis.engine.run_folder`: a resumable run's folder: checkpoints, ``metrics.csv``,
  setting another run aside;
* :mod:`~uvis.engine.processes`: device, threads and ``torchrun`` processes;
* :mod:`~uvis.engine.schedules`: the learning-rate schedules.

It sits below every package that trains (``train``, ``tagvis``, ``proposals``, ``standins``)
and imports none of them. Import from the modules: this package imports nothing itself, so
reading a loss curve (:mod:`~uvis.engine.run_folder`) does not load torch.
"""
