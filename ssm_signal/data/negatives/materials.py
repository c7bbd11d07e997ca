"""Recorded material of the negative corpus: the Sonic Pi samples (Debian ``sonic-pi-samples``, CC0) it
may use, none of them a training noise source, and their loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssm_signal.data.audio_io import read_audio
from ssm_signal.data.keywords import NOISE_SOURCES
from ssm_signal.data.skips import DataError

SONIC_PI_DIR = "/usr/share/sonic-pi/samples"
# Recorded material (Sonic Pi, CC0). None of it is in keywords.NOISE_SOURCES (checked when loaded).
DRUM_LOOPS = ("loop_amen", "loop_amen_full", "loop_breakbeat", "loop_compus", "loop_garzul", "loop_mika",
              "loop_safari", "loop_perc1", "loop_perc2", "loop_mehackit1", "loop_mehackit2", "loop_tabla",
              "loop_weirdo")  # fmt: skip
LAYER_LOOPS = ("loop_drone_g_97", "loop_electric", "loop_industrial", "loop_garzul", "loop_mika")
BASS_C = ("bass_drop_c", "bass_hard_c", "bass_hit_c", "bass_thick_c", "bass_trance_c", "bass_voxy_hit_c",
          "bass_woodsy_c")  # fmt: skip
GUITAR_E = ("guit_em9", "guit_e_fifths", "guit_harmonics", "guit_e_slide", "ambi_piano")
KICKS = ("bd_808", "bd_boom", "bd_fat", "bd_gas", "bd_haus", "bd_klub", "bd_pure", "bd_tek", "bd_zome",
         "drum_heavy_kick", "drum_bass_hard", "drum_bass_soft")  # fmt: skip
SNARES = ("sn_dolf", "sn_dub", "sn_generic", "sn_zome", "drum_snare_hard", "drum_snare_soft", "elec_snare",
          "elec_hi_snare", "elec_mid_snare")  # fmt: skip
HATS = ("drum_cymbal_closed", "drum_cymbal_pedal", "drum_cymbal_soft", "elec_cymbal")
CRASHES = ("drum_splash_soft", "drum_splash_hard", "drum_cymbal_open", "drum_cymbal_hard")
TABLA = ("tabla_dhec", "tabla_ghe1", "tabla_ghe4", "tabla_ghe8", "tabla_ke1", "tabla_ke2", "tabla_na", "tabla_na_o",
         "tabla_na_s", "tabla_re", "tabla_tas1", "tabla_te1", "tabla_te2", "tabla_te_m", "tabla_te_ne",
         "tabla_tun1")  # fmt: skip
EVENTS = ("elec_beep", "elec_bell", "elec_blip", "elec_blip2", "elec_blup", "elec_bong", "elec_chime", "elec_ping",
          "elec_plip", "elec_pop", "elec_twang", "elec_twip", "elec_wood", "elec_flip", "glitch_perc1", "glitch_perc2",
          "glitch_perc3", "glitch_perc4", "glitch_perc5", "mehackit_phone1", "mehackit_phone2", "mehackit_phone3",
          "mehackit_phone4", "misc_crow", "misc_cineboom", "perc_bell", "perc_bell2", "perc_door", "perc_impact1",
          "perc_impact2", "perc_snap", "perc_snap2", "perc_swash", "perc_swoosh", "perc_till", "vinyl_backspin",
          "vinyl_rewind", "vinyl_scratch", "drum_roll")  # fmt: skip
MACHINES = ("loop_3d_printer", "loop_industrial")
#: Real recorded background that may be mixed under the speech (a 3D printer at work).
SPEECH_BACKGROUND = ("loop_3d_printer",)


_SAMPLES: dict[tuple[str, int], np.ndarray] = {}  # a worker's cache of loaded samples


class Materials:
    """Loads Sonic Pi samples for one job and records which were used (never a training noise file)."""

    def __init__(self, sample_rate: int):
        self.sr = sample_rate
        self.used: set[str] = set()

    def __call__(self, name: str) -> np.ndarray:
        path = f"{SONIC_PI_DIR}/{name}.flac"
        if path in NOISE_SOURCES:
            raise DataError(f"{path} is a training noise source (keywords.NOISE_SOURCES): never a negative")
        if not Path(path).is_file():
            raise DataError(f"{path} not found: install the Debian package sonic-pi-samples (`make system-deps`)")
        self.used.add(path)
        key = (path, self.sr)
        if key not in _SAMPLES:
            _SAMPLES[key] = read_audio(path, self.sr).numpy()
        return _SAMPLES[key]

