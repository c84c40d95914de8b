"""Where utterances come from: the corpus registry, one reader per corpus layout, EmoBox and EmoNet metadata, the
6-class label table and dimensional ratings."""
