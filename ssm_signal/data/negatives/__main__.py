"""``python -m ssm_signal.data.negatives ROOT ...``: generate the negative corpus (see :func:`corpus.main`)."""

from ssm_signal.data.negatives.corpus import main

main()
