"""What a person sees: agreement levels in percent, the volume against agreement curve the
sliders read out, the read-out sentences, perceptual colour maps and PNG previews.
Shared by the command line, the Slicer module and the browser review.
"""
