"""Faces: detection (boxes, 68-point landmarks, 128-d encodings), face distance and the sim-score identity check."""

from studio.faces.detect import Face, detect_faces, encode_face, main_face
from studio.faces.identity import (DEFAULT_TOLERANCE, IdentityRow, check_identity, encode_reference, face_distance,
                                   sim_score, sim_scores)

__all__ = ["DEFAULT_TOLERANCE", "Face", "IdentityRow", "check_identity", "detect_faces", "encode_face",
           "encode_reference", "face_distance", "main_face", "sim_score", "sim_scores"]
