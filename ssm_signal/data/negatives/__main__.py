"""``python -m ssm_signal.data.negatives ROOT ...``: generate the negative corpus (see :func:`corpus.main`)."""

from ssm_signal.data.negatives.corpus import main

if __name__ == "__main__":  # importing the module (as the layering test does) generates nothing
    main()
